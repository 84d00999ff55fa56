// Chromium at phone and desktop widths: a full-page screenshot of each email
// and DOM measurements: no horizontal overflow, and what the reader must act
// on visible (the gateway code of the approved emails, the resource's name,
// every link). Chromium renders like Apple Mail and the webmails' own
// engines do, not like Outlook for Windows (Word): see docs/email-style.md.

import { mkdirSync } from "node:fs";
import { join } from "node:path";

import { chromium } from "playwright-core";

import { GATEWAY_CODE, RESOURCE } from "./render.mjs";

/** A small phone, and the width of most desktop clients' reading pane. */
export const WIDTHS = [320, 600];

export async function checkLayout(emails, { executablePath, outDir }) {
  const screenshots = join(outDir, "screenshots");
  mkdirSync(screenshots, { recursive: true });
  const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
  const problems = [];
  const notes = [];
  let shots = 0;
  try {
    const page = await browser.newPage({ deviceScaleFactor: 1 });
    // An email loads nothing: any request would fail in most clients
    // (images off by default) and would leak that the email was opened.
    await page.route("**/*", (route) => route.abort());
    for (const email of emails) {
      for (const width of WIDTHS) {
        await page.setViewportSize({ width, height: 800 });
        await page.setContent(email.html, { waitUntil: "load" });
        const wanted = [["resource", RESOURCE]];
        if (email.kind === "applicant_approved") {
          wanted.push(["gateway code", GATEWAY_CODE]);
        }
        const measured = await page.evaluate(measure, wanted);
        const where = `${email.id} at ${width}px`;
        if (measured.scrollWidth > width) {
          problems.push(`${where}: overflows horizontally (scrollWidth ${measured.scrollWidth}px)`);
        }
        for (const element of measured.elements) {
          const problem = visibilityProblem(element, width);
          if (problem !== null) {
            problems.push(`${where}: ${element.what} ${problem}`);
          }
          if (element.what === "gateway code" && element.lines > 1) {
            // A code cut inside a group of four is easy to mistype.
            const inside = element.breaksAfter.filter((char) => char !== "-");
            if (inside.length > 0) {
              problems.push(`${where}: the gateway code is cut inside a group (after ${inside.join(", ")})`);
            } else {
              notes.push(`${where}: the gateway code wraps onto ${element.lines} lines, between groups`);
            }
          }
        }
        await page.screenshot({ path: join(screenshots, `${email.id}.${width}.png`), fullPage: true });
        shots += 1;
      }
    }
  } finally {
    await browser.close();
  }
  return { problems, notes, shots, screenshots };
}

function visibilityProblem(element, width) {
  if (!element.found) {
    return "is missing";
  }
  if (element.hidden) {
    return `is hidden (${element.hidden})`;
  }
  if (element.width === 0 || element.height === 0) {
    return `has an empty box (${element.width}x${element.height})`;
  }
  if (element.left < 0 || element.right > width) {
    return `is outside the viewport horizontally (${element.left}..${element.right}px)`;
  }
  return null;
}

/**
 * Runs in the page: the document's scroll width, and for each `[what,
 * text]` the innermost element holding `text`, then every link, with
 * their boxes and whether CSS hides them. (The templates have no link or
 * button today: the call to action is the gateway code.)
 */
function measure(wanted) {
  // MJML sets font-size: 0 on layout cells (against gaps between inline
  // blocks), so only the element's own font size counts.
  const hiddenBy = (element) => {
    if (parseFloat(getComputedStyle(element).fontSize) === 0) return "font-size: 0";
    for (let node = element; node !== null; node = node.parentElement) {
      const style = getComputedStyle(node);
      if (style.display === "none") return "display: none";
      if (style.visibility === "hidden") return "visibility: hidden";
      if (Number(style.opacity) === 0) return "opacity: 0";
    }
    return null;
  };
  const describe = (what, element) => {
    if (element === null) {
      return { what, found: false };
    }
    const box = element.getBoundingClientRect();
    return {
      breaksAfter: breaksAfter(element),
      what,
      found: true,
      hidden: hiddenBy(element),
      width: box.width,
      height: box.height,
      left: box.left,
      right: box.right,
      lines: element.getClientRects().length,
    };
  };
  // The characters after which the element's text goes onto a new line.
  const breaksAfter = (element) => {
    const chars = [];
    const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
    const range = document.createRange();
    let previous = null;
    for (let node = walker.nextNode(); node !== null; node = walker.nextNode()) {
      for (let at = 0; at < node.data.length; at += 1) {
        range.setStart(node, at);
        range.setEnd(node, at + 1);
        const top = range.getBoundingClientRect().top;
        if (previous !== null && top > previous.top + 1) {
          chars.push(previous.char);
        }
        previous = { top, char: node.data[at] };
      }
    }
    return chars;
  };
  // The innermost element holding `text`: down from <body>, into the
  // first child that still holds it.
  const holding = (text) => {
    if (!document.body.textContent.includes(text)) {
      return null;
    }
    let node = document.body;
    for (;;) {
      const child = [...node.children].find((candidate) => candidate.textContent.includes(text));
      if (child === undefined) {
        return node;
      }
      node = child;
    }
  };
  const elements = wanted.map(([what, text]) => describe(what, holding(text)));
  for (const link of document.querySelectorAll("a[href]")) {
    elements.push(describe(`link ${JSON.stringify(link.textContent.trim())}`, link));
  }
  return { scrollWidth: document.documentElement.scrollWidth, elements };
}
