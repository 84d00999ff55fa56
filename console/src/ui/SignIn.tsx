// Sign-in with an API key pasted by the user.
import { useState } from "preact/hooks";
import type { UiError } from "../errors";
import { t } from "../i18n";
import { ErrorBanner, Field } from "./common";

export function SignIn(props: {
  checking: boolean;
  message?: string;
  error?: UiError;
  hasKey: boolean;
  onRetry: () => void;
  onSubmit: (key: string) => void;
}) {
  const [key, setKey] = useState("");
  const [fieldError, setFieldError] = useState<string>();
  return (
    <section class="signin">
      <h1 tabIndex={-1}>{t("signin.title")}</h1>
      <p>{t("signin.intro")}</p>
      {props.message ? (
        <p class="banner banner-info" role="alert">
          {props.message}
        </p>
      ) : null}
      <ErrorBanner error={props.error} onRetry={props.hasKey ? props.onRetry : undefined} />
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const trimmed = key.trim();
          if (!trimmed) {
            setFieldError(t("signin.required"));
            return;
          }
          setFieldError(undefined);
          setKey("");
          props.onSubmit(trimmed);
        }}
        noValidate
      >
        <Field id="api-key" label={t("signin.key")} error={fieldError}>
          {(describedBy, invalid) => (
            <input
              id="api-key"
              type="password"
              autoComplete="off"
              spellcheck={false}
              value={key}
              aria-describedby={describedBy}
              aria-invalid={invalid}
              onInput={(e) => setKey(e.currentTarget.value)}
            />
          )}
        </Field>
        <button type="submit" class="button-primary" disabled={props.checking}>
          {t("signin.submit")}
        </button>
        <p aria-live="polite" role="status" class="live-region">
          {props.checking ? t("signin.checking") : ""}
        </p>
      </form>
    </section>
  );
}
