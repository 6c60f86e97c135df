// Drive real headless Chromium (Debian's /usr/bin/chromium) through playwright-core over a list of pages;
// print one JSON result per page. Called by tests/site_browser/harness.py:
//   node browse.mjs <job.json>
// job: {chromium, modules, screenshots, allowed: [origin...], pages: [{name, url, width, axe, bypass_csp,
//       script, wait_for, checks: {name: js expression}}]}
// Per page: HTTP status, axe-core violations, requests to origins not allowed (aborted, never sent),
// requests made with a Range header (page and workers), console errors, uncaught page errors, dialogs opened (alert/confirm: hostile input that executed),
// whether keyboard focus is visible on the first focusable element, the checks' values, a screenshot.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const require = createRequire(path.join(job.modules, "noop.js"));
const { chromium } = require("playwright-core");
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const allowed = new Set(job.allowed);

const browser = await chromium.launch({ executablePath: job.chromium, headless: true,
                                        args: ["--no-sandbox", "--disable-gpu", "--use-gl=swiftshader", "--enable-unsafe-swiftshader"] });
const results = [];
try {
  for (const spec of job.pages) {
    const context = await browser.newContext({ viewport: { width: spec.width || 1280, height: 900 },
                                               bypassCSP: !!spec.bypass_csp, serviceWorkers: "block" });
    const page = await context.newPage();
    const result = { name: spec.name, url: spec.url, width: spec.width || 1280, foreign: [], console_errors: [],
                     page_errors: [], dialogs: [], checks: {}, axe: [], failed_requests: [], ranges: [] };
    await page.route("**/*", (route) => {
      const url = route.request().url();
      let origin = null;
      try { origin = new URL(url).origin; } catch { /* data: or blob: */ }
      if (origin && origin !== "null" && !allowed.has(origin) && !url.startsWith("data:") && !url.startsWith("blob:")) {
        result.foreign.push(url);
        return route.abort();
      }
      return route.continue();
    });
    page.on("request", (req) => { const range = req.headers()["range"]; if (range) result.ranges.push(`${req.url()} ${range}`); });
    page.on("console", (msg) => { if (msg.type() === "error") result.console_errors.push(msg.text()); });
    page.on("pageerror", (err) => result.page_errors.push(String(err)));
    page.on("requestfailed", (req) => result.failed_requests.push(`${req.url()} ${req.failure()?.errorText}`));
    page.on("dialog", async (dialog) => { result.dialogs.push(dialog.message()); await dialog.dismiss(); });
    try {
      const response = await page.goto(spec.url, { waitUntil: "load", timeout: 60000 });
      result.status = response ? response.status() : null;
      if (spec.script) {  // an expression, e.g. "(() => { ...; return 1; })()"; runs before wait_for
        try { result.script = await page.evaluate(spec.script); }
        catch (e) { result.script_error = String(e).split("\n")[0]; }
      }
      if (spec.wait_for) {
        try { await page.waitForSelector(spec.wait_for, { timeout: spec.wait_ms || 30000 }); }
        catch (e) { result.wait_error = String(e).split("\n")[0]; }
      }
      for (const [name, expression] of Object.entries(spec.checks || {})) {
        try { result.checks[name] = await page.evaluate(expression); }
        catch (e) { result.checks[name] = { error: String(e).split("\n")[0] }; }
      }
      await page.keyboard.press("Tab");
      result.focus = await page.evaluate(() => {
        const el = document.activeElement;
        if (!el || el === document.body) return { element: null, visible: false };
        const style = getComputedStyle(el);
        const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0;
        const shadow = style.boxShadow && style.boxShadow !== "none";
        return { element: el.tagName.toLowerCase() + (el.className ? "." + el.className : ""),
                 text: (el.textContent || "").trim().slice(0, 60), visible: !!(outline || shadow) };
      });
      if (spec.axe) {
        await page.evaluate(axeSource);
        result.axe = await page.evaluate(async () => {
          const found = await window.axe.run(document, { resultTypes: ["violations"] });
          return found.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                                                 nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")) }));
        });
      }
      if (job.screenshots) {
        result.screenshot = path.join(job.screenshots, `${spec.name}.png`);
        await page.screenshot({ path: result.screenshot, fullPage: true });
      }
    } catch (e) {
      result.error = String(e).split("\n")[0];
    }
    results.push(result);
    await context.close();
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(results));
