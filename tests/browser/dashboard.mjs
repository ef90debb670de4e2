// Drives the dashboard in headless Chromium:
//   node tests/browser/dashboard.mjs ADMIN_URL TOKEN OUT_PNG IDLE_CONFIG CONFIG
//
// Opens the page of a canary mid-rollout, waits for the phase and the charts drawn with
// data, checks that the legends show figures without a hover (the candidate's mirrored
// copies apart from its users' requests, accuracy with its label count) and that only
// the controls the phase allows show. Clicks "Roll back", gives a reason and then the
// admin token when asked, waits for the phase to read rolled_back and only "Retry" to
// show. Then moves IDLE_CONFIG (the config without a candidate) over CONFIG and waits
// for the idle route in words, with no control. Screenshots: OUT_PNG before the click,
// OUT-phone.png after it at 390 px wide. Exits non-zero, printing what the page showed,
// on any failure.
// playwright-core is looked up in target/browser (npm install --prefix target/browser).
import { createRequire } from "node:module";
import { renameSync } from "node:fs";

const [url, token, out, idleConfig, config] = process.argv.slice(2);
if (!url || !token || !out || !idleConfig || !config) {
  console.error("usage: dashboard.mjs ADMIN_URL TOKEN OUT_PNG IDLE_CONFIG CONFIG");
  process.exit(2);
}

/** Fails with `what` unless `ok`. */
function check(ok, what) {
  if (!ok) throw new Error(what);
}

/** The labels of the control buttons shown. */
const shownControls = (page) => page.locator("button[data-action]:visible").allInnerTexts();

/** Waits until the controls shown are exactly `labels`. */
async function waitControls(page, labels, timeout = 10000) {
  const until = Date.now() + timeout;
  for (;;) {
    const shown = await shownControls(page);
    if (shown.join() === labels.join()) return;
    check(Date.now() < until, `controls shown: [${shown}], expected [${labels}]`);
    await page.waitForTimeout(200);
  }
}

/** A chart's legend, entry by entry: { label: value } (the time column under "time"). */
async function legend(page, chart) {
  const rows = await page.locator(`#${chart} .u-legend .u-series`).evaluateAll((trs) =>
    trs.map((tr) => [tr.querySelector(".u-label")?.textContent ?? "", tr.querySelector(".u-value")?.textContent ?? ""]));
  return Object.fromEntries(rows.map(([k, v]) => [k || "time", v]));
}

/** Waits until `chart`'s legend passes `test`, and returns it. */
async function waitLegend(page, chart, test, what, timeout = 15000) {
  const until = Date.now() + timeout;
  for (;;) {
    const l = await legend(page, chart);
    if (test(l)) return l;
    check(Date.now() < until, `${chart}: ${what}; legend ${JSON.stringify(l)}`);
    await page.waitForTimeout(250);
  }
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

  // Progressing: promote, pause and roll back; not resume, not retry.
  await waitControls(page, ["Promote", "Pause", "Roll back"]);
  await page.locator("#progress-text", { hasText: "step 0 of 2" }).waitFor();
  // Legends show figures with the cursor off the plot, never "--". The candidate's users
  // (25 %) apart from the copies mirrored to it (every stable request).
  const rps = await waitLegend(page, "chart-rps",
    (l) => /\/s$/.test(l["green mirrored copies"] ?? "") && /\/s$/.test(l["green users"] ?? ""),
    "green's users and mirrored copies, each a rate");
  check(rps.time === "latest", `the rps legend's time: ${rps.time}`);
  check(!Object.values(rps).includes("--"), `a legend reads "--": ${JSON.stringify(rps)}`);
  check(!("blue mirrored copies" in rps), `nothing is mirrored to the stable: ${JSON.stringify(rps)}`);
  // Accuracy on its own chart, each figure with the labels it is of; still so after a
  // few more polls (the legend reads the newest points, not those of its first draw).
  const labelled = (l) => ["blue", "green"].every((b) => /^\d+(\.\d)? % of [1-9]\d* labels$/.test(l[b] ?? ""));
  await waitLegend(page, "chart-accuracy", labelled, "accuracy of both backends with their label counts", 20000);
  await page.waitForTimeout(4500);
  const later = await legend(page, "chart-accuracy");
  check(labelled(later), `accuracy legend after two polls: ${JSON.stringify(later)}`);
  for (const chart of ["chart-weight", "chart-errors", "chart-latency"]) {
    const l = await legend(page, chart);
    check(!Object.values(l).includes("--"), `${chart}'s legend reads "--": ${JSON.stringify(l)}`);
  }

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
  // Rolled back: only retry.
  await waitControls(page, ["Retry"]);

  // The config drops the candidate: the route is idle, said so, with nothing to control.
  renameSync(idleConfig, config);
  await page.locator("#phase", { hasText: "idle" }).waitFor({ timeout: 15000 });
  await page.locator("#progress-text", { hasText: "idle: all traffic to blue" }).waitFor({ timeout: 5000 });
  await waitControls(page, []);
  check(await page.locator("#steps span").count() === 0, "an idle route shows step boxes");
  check(/nothing to control/.test(await page.locator("#controls-note").innerText()), "no note on the idle controls");

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
