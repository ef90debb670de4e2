// Drives the dashboard in headless Chromium: node tests/browser/dashboard.mjs ADMIN_URL TOKEN OUT_PNG
//
// Opens the page, waits for the phase and a chart drawn with data, clicks "Roll back",
// gives a reason and then the admin token when asked, waits for the phase to read
// rolled_back. Screenshots: OUT_PNG before the click, OUT-phone.png after it at 390 px
// wide. Exits non-zero, printing what the page showed, on any failure.
// playwright-core is looked up in target/browser (npm install --prefix target/browser).
import { createRequire } from "node:module";

const [url, token, out] = process.argv.slice(2);
if (!url || !token || !out) {
  console.error("usage: dashboard.mjs ADMIN_URL TOKEN OUT_PNG");
  process.exit(2);
}
const require = createRequire(new URL("../../target/browser/", import.meta.url));
const { chromium } = require("playwright-core");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
let page;
try {
  page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
  const problems = [];
  // Errors on the console fail the test, but the 401 the first try of a control is meant to get.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().includes("status of 401")) problems.push("console: " + m.text());
  });
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  await page.goto(url);

  // The phase, in words.
  await page.locator("#phase", { hasText: "progressing" }).waitFor({ timeout: 15000 });
  // At least one chart drawn from the history, with points.
  await page.waitForSelector("#chart-rps[data-points]:not([data-points='0']) canvas", { timeout: 15000 });
  await page.waitForSelector("#chart-weight[data-points]:not([data-points='0']) canvas", { timeout: 15000 });
  await page.locator("#gates tbody tr").first().waitFor({ timeout: 15000 });

  // The picture for the README: the rollout at its first step, before anything is clicked.
  await page.waitForTimeout(2500); // one more poll, so every panel has its data
  await page.screenshot({ path: out, fullPage: true });

  // Roll back: a reason, then the token the API asked for.
  await page.click("button[data-action=rollback]");
  await page.locator("#ask-label", { hasText: "Reason" }).waitFor();
  await page.fill("#ask-input", "rolled back by the browser test");
  await page.click("#ask-ok");
  await page.locator("#ask-label", { hasText: "Admin token" }).waitFor({ timeout: 10000 });
  await page.fill("#ask-input", token);
  await page.click("#ask-ok");
  await page.locator("#phase", { hasText: "rolled_back" }).waitFor({ timeout: 10000 });
  await page.locator("#answer", { hasText: "rollback: done" }).waitFor({ timeout: 10000 });

  // The rolled-back page at phone width, for a look at the narrow layout.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: out.replace(/\.png$/, "-phone.png"), fullPage: true });
  if (problems.length) throw new Error(problems.join("\n"));
  console.log("dashboard ok; screenshot at " + out);
} catch (e) {
  console.error(e.message);
  if (page) {
    console.error("page text:\n" + (await page.locator("body").innerText().catch(() => "?")));
    await page.screenshot({ path: out, fullPage: true }).catch(() => {});
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
