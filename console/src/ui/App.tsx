// The shell: sign-in, the session (GetCaller), the header with language and
// connection state, the navigation and the screen of the current route.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { Code } from "@connectrpc/connect";
import { durationMs, roleLabel } from "../format";
import { api, callOptions, clearApiKey, getApiKey, setApiKey, setUnauthenticatedHandler } from "../api";
import { CallerRole } from "@client/gen/sesame/v1/caller_pb";
import { describeError, type UiError } from "../errors";
import { detectLang, getLang, setLang, t, type Lang } from "../i18n";
import { startLive, useConnectionState } from "../live";
import { navigate, useRoute } from "../router";
import { consoleRole, isAdmin, SessionContext, type Session } from "../session";
import { Link } from "./common";
import { SignIn } from "./SignIn";
import { Queue } from "./Queue";
import { Detail } from "./Detail";
import { Emails } from "./Emails";
import { Stats } from "./Stats";
import { Audit } from "./Audit";
import { Privacy } from "./Privacy";

const LANG_KEY = "sesame.lang";

function initialLang(): Lang {
  const saved = localStorage.getItem(LANG_KEY);
  if (saved === "en" || saved === "fr") return saved;
  return detectLang(navigator.languages?.length ? navigator.languages : [navigator.language]);
}

type Auth =
  | { status: "signedOut"; message?: string; error?: UiError }
  | { status: "checking" }
  | { status: "signedIn"; session: Session };

export function App() {
  const [lang, setLangState] = useState<Lang>(() => {
    const l = initialLang();
    setLang(l);
    return l;
  });
  const [auth, setAuth] = useState<Auth>(() => (getApiKey() ? { status: "checking" } : { status: "signedOut" }));

  useEffect(() => {
    document.documentElement.lang = lang;
    document.title = t("app.title");
  }, [lang]);

  const changeLang = (l: Lang) => {
    setLang(l);
    localStorage.setItem(LANG_KEY, l);
    setLangState(l);
  };

  const signOut = useCallback((message?: string) => {
    clearApiKey();
    setAuth({ status: "signedOut", message });
  }, []);

  useEffect(() => {
    setUnauthenticatedHandler(() => signOut(t("signin.expired")));
    return () => setUnauthenticatedHandler(undefined);
  }, [signOut]);

  const checkKey = useCallback(async () => {
    setAuth({ status: "checking" });
    try {
      const caller = await api.caller.getCaller({}, callOptions);
      if (!consoleRole(caller.role)) {
        clearApiKey();
        setAuth({ status: "signedOut", message: t("signin.wrongRole", { role: roleLabel(caller.role) }) });
        return;
      }
      setAuth({
        status: "signedIn",
        session: { name: caller.name, role: caller.role, slaMs: durationMs(caller.reviewSla) },
      });
    } catch (err) {
      const ui = describeError(err);
      if (ui.unauthenticated) {
        clearApiKey();
        setAuth({ status: "signedOut", message: t("signin.unknownKey") });
      } else if (ui.code === Code.PermissionDenied) {
        clearApiKey();
        setAuth({ status: "signedOut", message: t("signin.wrongRole", { role: t("role.unknown") }) });
      } else {
        // Keep the key: the server may just be unreachable; the user can retry.
        setAuth({ status: "signedOut", error: ui });
      }
    }
  }, []);

  useEffect(() => {
    if (getApiKey()) void checkKey();
  }, [checkKey]);

  // One live stream while signed in.
  const signedIn = auth.status === "signedIn";
  useEffect(() => {
    if (!signedIn) return;
    const controller = new AbortController();
    startLive(controller.signal, () => signOut(t("signin.expired")));
    return () => controller.abort();
  }, [signedIn, signOut]);

  if (auth.status !== "signedIn") {
    return (
      <div class="shell">
        <SkipLink />
        <header class="topbar">
          <p class="brand">{t("app.title")}</p>
          <LangSwitch lang={lang} onChange={changeLang} />
        </header>
        <main id="main" tabIndex={-1}>
          <SignIn
            checking={auth.status === "checking"}
            message={auth.status === "signedOut" ? auth.message : undefined}
            error={auth.status === "signedOut" ? auth.error : undefined}
            hasKey={!!getApiKey()}
            onRetry={checkKey}
            onSubmit={(key) => {
              setApiKey(key);
              void checkKey();
            }}
          />
        </main>
      </div>
    );
  }

  return (
    <SessionContext.Provider value={auth.session}>
      <Shell lang={lang} onLang={changeLang} session={auth.session} onSignOut={() => signOut(t("signin.signedOut"))} />
    </SessionContext.Provider>
  );
}

function SkipLink() {
  return (
    <a class="skip-link" href="#main">
      {t("app.skip")}
    </a>
  );
}

function LangSwitch({ lang, onChange }: { lang: Lang; onChange: (l: Lang) => void }) {
  return (
    <div class="lang">
      <label for="lang-select">{t("app.language")}</label>
      <select id="lang-select" value={lang} onChange={(e) => onChange((e.currentTarget.value as Lang) ?? "en")}>
        <option value="en" lang="en">
          English
        </option>
        <option value="fr" lang="fr">
          Français
        </option>
      </select>
    </div>
  );
}

function ConnectionIndicator() {
  const state = useConnectionState();
  return (
    <p class={`conn conn-${state}`} aria-live="polite" role="status">
      <span class="conn-dot" aria-hidden="true" />
      {t("conn.status", { state: t(`conn.${state}`) })}
    </p>
  );
}

interface NavItem {
  path: string;
  label: string;
  adminOnly: boolean;
}

function Shell({ lang, onLang, session, onSignOut }: { lang: Lang; onLang: (l: Lang) => void; session: Session; onSignOut: () => void }) {
  const route = useRoute();
  const admin = isAdmin(session);
  const items: NavItem[] = [
    { path: "/", label: t("nav.queue"), adminOnly: false },
    { path: "/emails", label: t("nav.emails"), adminOnly: true },
    { path: "/stats", label: t("nav.stats"), adminOnly: true },
    { path: "/audit", label: t("nav.audit"), adminOnly: false },
    { path: "/privacy", label: t("nav.privacy"), adminOnly: true },
  ].filter((i) => admin || !i.adminOnly);

  // Move focus to the new screen's heading after an in-app navigation.
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    const h1 = document.querySelector<HTMLElement>("main h1");
    h1?.focus();
  }, [route.path]);

  const section = route.path === "/" || route.path === "/queue" || route.path.startsWith("/accessRequests/") ? "/" : route.path;

  return (
    <div class="shell" lang={getLang()}>
      <SkipLink />
      <header class="topbar">
        <p class="brand">{t("app.title")}</p>
        <ConnectionIndicator />
        <p class="who">{t("app.signedInAs", { name: session.name, role: roleLabel(session.role) })}</p>
        <LangSwitch lang={lang} onChange={onLang} />
        <button type="button" class="button-secondary" onClick={onSignOut}>
          {t("app.signOut")}
        </button>
      </header>
      <nav aria-label={t("app.nav")} class="mainnav">
        <ul>
          {items.map((i) => (
            <li key={i.path}>
              <Link href={i.path} aria-current={section === i.path ? "page" : undefined}>
                {i.label}
              </Link>
            </li>
          ))}
        </ul>
      </nav>
      <main id="main" tabIndex={-1}>
        {session.role === CallerRole.AUDITOR ? <p class="notice notice-info">{t("app.readOnly")}</p> : null}
        <Screen path={route.path} admin={admin} />
      </main>
    </div>
  );
}

function Screen({ path, admin }: { path: string; admin: boolean }) {
  if (path === "/" || path === "/queue") return <Queue />;
  if (path.startsWith("/accessRequests/")) return <Detail name={decodeURIComponent(path.slice(1))} />;
  if (path === "/audit") return <Audit />;
  if (path === "/emails" || path === "/stats" || path === "/privacy") {
    if (!admin) return <Forbidden />;
    if (path === "/emails") return <Emails />;
    if (path === "/stats") return <Stats />;
    return <Privacy />;
  }
  return (
    <section>
      <h1 tabIndex={-1}>{t("app.notFound")}</h1>
      <p>
        <Link href="/">{t("app.backToQueue")}</Link>
      </p>
    </section>
  );
}

function Forbidden() {
  return (
    <section>
      <h1 tabIndex={-1}>{t("app.forbidden")}</h1>
      <p>
        <button type="button" class="button-secondary" onClick={() => navigate("/")}>
          {t("app.backToQueue")}
        </button>
      </p>
    </section>
  );
}
