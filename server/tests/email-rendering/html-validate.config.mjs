// html-validate's configuration for Sesame's emails: the recommended preset,
// with what email HTML does on purpose allowed, and everything that catches a
// real bug kept (close-order, no-implicit-close, element-permitted-content,
// element-permitted-parent, no-dup-id, no-dup-attr, attribute-allowed-values,
// wcag/h37 (img alt), wcag/h30 (link text), deprecated (<font>, <center>,
// <marquee>...), unrecognized-char-ref, no-raw-characters, valid-id, ...).

/**
 * The layout attributes of tables and images that HTML5 deprecated and
 * email HTML still needs: Outlook for Windows renders with Word, which
 * ignores most CSS box properties and reads widths, alignment, spacing and
 * background colours from these attributes instead (MJML writes them for
 * that reason). They are declared not deprecated on these elements only:
 * `no-deprecated-attr` stays on, so any other deprecated attribute, or one
 * of these on another element (`<body bgcolor>`, `<p align>`), is still
 * reported.
 */
const emailLayoutAttributes = {
  table: ["align", "bgcolor", "border", "cellpadding", "cellspacing", "width"],
  tr: ["align", "bgcolor", "valign"],
  td: ["align", "bgcolor", "height", "valign", "width"],
  th: ["align", "bgcolor", "height", "valign", "width"],
  img: ["align", "border", "height", "width"],
};

const emailElements = Object.fromEntries(
  Object.entries(emailLayoutAttributes).map(([element, attributes]) => [
    element,
    {
      attributes: Object.fromEntries(
        attributes.map((attribute) => [attribute, { deprecated: false }]),
      ),
    },
  ]),
);

export default {
  root: true,
  extends: ["html-validate:recommended"],
  elements: ["html5", emailElements],
  rules: {
    // Many clients drop or rewrite <style> blocks (Gmail in some of its
    // apps, forwarded mail, older webmails): inline styles are the only
    // styling every client applies, so MJML inlines them everywhere.
    "no-inline-style": "off",
    // Outlook for Windows (Word engine) gets its fixed-width tables and
    // its DPI settings from `<!--[if mso]>` comments; MJML writes them on
    // purpose and every other client ignores them.
    "no-conditional-comment": "off",
    // MJML writes `<!doctype html>` in lower case: same meaning, only a
    // matter of taste.
    "doctype-style": "off",
    // MJML wraps the email in `<div role="article"
    // aria-roledescription="email">`, the accessible-email pattern: some
    // webmails strip or restyle an unknown-to-them <article>, a div with a
    // role survives. Other roles still must use their native element.
    "prefer-native-element": ["error", { exclude: ["article"] }],
    // mrml writes `<br/>` for the templates' `<br>`, and `<meta ...>`
    // without a slash: both forms are valid HTML5 and parsed alike by
    // every client; which one is only a matter of taste.
    "void-style": "off",
    // A search-engine rule (result titles are cut at about 70
    // characters). An email's <title> is its subject, which clients show
    // from the Subject header; how much of it an inbox list shows is a
    // question of wording, not of valid HTML.
    "long-title": "off",
  },
};
