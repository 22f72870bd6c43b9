// Drives the medmesh web console of two real nodes in headless Chromium,
// as clinic staff would: sign in through `medmesh ui --url` links, add a
// record by upload, share it with the other clinic, see it appear there
// live, read it there, see the read in the owner's audit, revoke. Checks on
// every page: the Content-Security-Policy header on every answer, no CSP
// violation, no script error, axe-core's accessibility rules; saves a
// screenshot of each page.
//
// Run by cmd/medmesh's TestConsoleInBrowser, which starts the daemons and
// passes MEDMESH_CONSOLE_E2E (JSON): bin (the medmesh binary), chromium,
// shots and downloads (directories), upload (a file), owner and grantee
// ({repo, peer, org}), study (a DICOM study record of the owner's, shared
// with the grantee, or ""), dataset (a dataset name granted to the grantee,
// or "") and fetch_dir (where the grantee fetches it).
// It prints one JSON line with what it saw, and exits non-zero on failure.
'use strict';

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const puppeteer = require('puppeteer-core');
const axeSource = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const cfg = JSON.parse(process.env.MEDMESH_CONSOLE_E2E);
const uploadName = path.basename(cfg.upload);
const failures = [];
const shots = [];
const checked = { responses: 0, pages: 0 };
const browsers = [];

function fail(msg) { failures.push(msg); console.error('FAIL: ' + msg); }
function assert(cond, msg) { if (!cond) throw new Error(msg); }
function log(msg) { console.error('[e2e] ' + msg); }

// link asks the node for a sign-in link, as a user would.
function link(repo) {
  const out = execFileSync(cfg.bin, ['--repo', repo, 'ui', '--url', '--json'], { env: process.env });
  return JSON.parse(out.toString()).url;
}

async function launch(name, refusals) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medmesh-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: cfg.chromium,
    headless: true,
    userDataDir: dir,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
      // Only 127.0.0.1: any other name fails to resolve.
      '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1'],
    defaultViewport: { width: 1280, height: 900 },
  });
  browsers.push({ browser, dir });
  const page = (await browser.pages())[0] || await browser.newPage();
  // b.allow: the refusals Chromium logs that this browser is meant to see
  // now (a used link, no session, a page that does not exist).
  const b = { name, browser, page, downloads: '', allow: refusals ? /status of 40[13]/ : null };
  page.setDefaultTimeout(45000);
  page.on('response', (r) => {
    const u = new URL(r.url());
    if (u.hostname !== '127.0.0.1' || r.status() === 0) return;
    checked.responses++;
    const csp = r.headers()['content-security-policy'] || '';
    if (!csp.includes("default-src 'self'") || !csp.includes("frame-ancestors 'none'") || csp.includes('unsafe-inline')) {
      fail(`${name}: ${r.request().method()} ${u.pathname} answered ${r.status()} without the console's Content-Security-Policy: "${csp}"`);
    }
  });
  page.on('console', (m) => {
    // A browser sent to a used link or without a session is refused
    // (403, 401) as it should be; Chromium logs that.
    if (b.allow && b.allow.test(m.text())) return;
    if (m.type() === 'error') fail(`${name}: console error on ${page.url()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => fail(`${name}: script error on ${page.url()}: ${e.message}`));
  await page.evaluateOnNewDocument(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI);
    });
  });
  const cdp = await browser.target().createCDPSession();
  const downloads = path.join(cfg.downloads, name);
  fs.mkdirSync(downloads, { recursive: true });
  await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: downloads });
  b.downloads = downloads;
  return b;
}

async function shot(b, file) {
  const p = path.join(cfg.shots, file + '.png');
  await b.page.screenshot({ path: p, fullPage: true });
  shots.push(p);
  log('screenshot ' + p);
}

// audit runs axe-core's WCAG 2.1 A/AA rules on the page.
async function audit(b, what) {
  checked.pages++;
  await b.page.evaluate(axeSource);
  const res = await b.page.evaluate(() => axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } }));
  for (const v of res.violations) {
    fail(`${b.name}: accessibility (${what}): ${v.id}: ${v.help}: ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join('; ')}`);
  }
}

// thumbsLoaded waits for a study page's two series thumbnails, rendered
// PNGs (not the grey "no preview" tile, which is SVG).
async function thumbsLoaded(b) {
  await b.page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll('.thumbs img')];
    return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
  }, { timeout: 30000, polling: 100 });
  const thumbs = await b.page.$$eval('.thumbs img', (imgs) => imgs.map((i) => [i.naturalWidth, i.currentSrc]));
  assert(thumbs.length === 2 && thumbs.every(([w]) => w > 0), `${b.name}: study thumbnails: ${JSON.stringify(thumbs)}`);
  for (const [, src] of thumbs) {
    const type = await b.page.evaluate(async (u) => (await fetch(u)).headers.get('content-type'), src);
    assert(type === 'image/png', `${b.name}: thumbnail ${src} is ${type}, not a rendered image`);
  }
}

async function text(b) { return b.page.evaluate(() => document.body.innerText); }

async function signIn(b, url) {
  await b.page.goto(url);
  await b.page.waitForFunction(() => location.pathname === '/ui/' && document.readyState === 'complete' && document.querySelector('h1'), { polling: 100 });
  const h1 = await b.page.$eval('h1', (e) => e.textContent);
  assert(h1 === 'Overview', `${b.name}: after sign-in the page says ${h1}`);
}

async function main() {
  fs.mkdirSync(cfg.shots, { recursive: true });
  const owner = await launch('owner');
  const grantee = await launch('grantee');
  const ownerURL = link(cfg.owner.repo);
  const base = new URL(ownerURL).origin;
  const gBase = new URL(link(cfg.grantee.repo)).origin; // (this link is left unused: it expires)

  // Sign in on both nodes.
  await signIn(owner, ownerURL);
  await shot(owner, '01-owner-overview');
  await audit(owner, 'overview');
  await signIn(grantee, link(cfg.grantee.repo));
  await grantee.page.goto(gBase + '/ui/records');
  await shot(grantee, '02-grantee-records-empty');
  await audit(grantee, 'records');

  // Keyboard: the first Tab reaches "Skip to content", which moves focus
  // to the page's content.
  await owner.page.goto(base + '/ui/records');
  await owner.page.keyboard.press('Tab');
  assert(await owner.page.evaluate(() => document.activeElement.textContent) === 'Skip to content', 'the first Tab does not reach the skip link');
  await owner.page.keyboard.press('Enter');
  assert(await owner.page.evaluate(() => document.activeElement.id) === 'main', 'the skip link does not move focus to the content');

  // Add a record by upload, with the progress bar.
  await owner.page.select('#class', 'report');
  const input = await owner.page.$('#file');
  await input.uploadFile(cfg.upload);
  let sawProgress = false;
  const watchBar = owner.page.waitForSelector('#upload-progress:not([hidden])', { timeout: 20000 }).then(() => { sawProgress = true; }, () => {});
  await Promise.all([
    owner.page.waitForNavigation({ waitUntil: 'load', timeout: 120000 }),
    owner.page.click('#upload-form button[type=submit]'),
  ]);
  await watchBar;
  assert(sawProgress, 'the upload showed no progress bar');
  const m = new URL(owner.page.url()).pathname.match(/^\/ui\/records\/(baf[a-z0-9]+)$/);
  assert(m, 'after the upload the browser is at ' + owner.page.url());
  const id = m[1];
  let t = await text(owner);
  assert(t.includes(uploadName) && t.includes('Added ' + uploadName), 'the new record page does not name the upload: ' + t.slice(0, 300));
  await shot(owner, '03-owner-record-added');
  await audit(owner, 'record (owner)');

  // Share it with the other clinic, chosen by organisation.
  await owner.page.click('a[href="/ui/share?id=' + id + '"]');
  await owner.page.waitForSelector('#share-to');
  const to = await owner.page.$$eval('#share-to option', (os, org) => (os.find((o) => o.textContent.startsWith(org)) || {}).value, cfg.grantee.org);
  assert(to === cfg.grantee.peer, 'the member list does not offer ' + cfg.grantee.org + ': ' + to);
  assert(await owner.page.$eval('#share-id', (s) => s.value) === id, 'the share form did not preselect the record');
  await owner.page.select('#share-to', to);
  await owner.page.select('#share-purpose', 'treatment');
  await owner.page.select('#share-expires', '168h');
  await shot(owner, '04-owner-share');
  await audit(owner, 'share');
  await Promise.all([owner.page.waitForNavigation(), owner.page.click('form.stack button[type=submit]')]);
  t = await text(owner);
  assert(t.includes('Shared with ' + cfg.grantee.org), 'no confirmation of the share: ' + t.slice(0, 300));
  await shot(owner, '05-owner-record-shared');

  // The grantee's records page shows it without a reload.
  await grantee.page.waitForSelector(`#shared-records tr[data-id="${id}"]`, { timeout: 60000 });
  const row = await grantee.page.$eval(`#shared-records tr[data-id="${id}"]`, (r) => r.innerText);
  assert(row.includes(uploadName) && row.includes(cfg.owner.org) && row.includes('treatment'), 'the live row says: ' + row);
  const banner = await grantee.page.$eval('#live-banner', (b) => (b.hidden ? '' : b.innerText));
  assert(banner.includes('shared ' + uploadName), 'the live banner says: ' + banner);
  await shot(grantee, '06-grantee-records-live');
  await audit(grantee, 'records with a live row');

  // Done when: the page behind `medmesh ui --url` on the grantee's node,
  // in a fresh browser, shows the record by name, the owner's
  // organisation and the grant's purpose.
  const fresh = link(cfg.grantee.repo);
  const c = await launch('grantee-fresh');
  await signIn(c, fresh);
  const r1 = await c.page.$eval(`#overview-shared tr[data-id="${id}"]`, (r) => r.innerText);
  assert(r1.includes(uploadName) && r1.includes(cfg.owner.org) && r1.includes('treatment'), 'the overview row says: ' + r1);
  await shot(c, '07-grantee-overview-done-when');
  // The same link a second time, in another fresh browser: no data.
  const d = await launch('link-reused', true);
  const reuse = await d.page.goto(fresh);
  t = await text(d);
  assert(reuse.status() === 403 && t.includes('used already or has expired'), 'the reused link answered ' + reuse.status() + ': ' + t);
  for (const secret of [uploadName, cfg.owner.org, cfg.grantee.org, cfg.owner.peer, cfg.grantee.peer, id, 'treatment']) {
    assert(!t.includes(secret) && !(await d.page.content()).includes(secret), 'the reused link shows ' + secret);
  }
  await shot(d, '08-link-used-twice');
  await audit(d, 'sign-in page');
  // /ui/ without a session: no data either.
  const none = await d.page.goto(gBase + '/ui/');
  const html = await d.page.content();
  assert(none.status() === 401, '/ui/ without a session answered ' + none.status());
  for (const secret of [uploadName, cfg.owner.org, cfg.grantee.org, cfg.owner.peer, cfg.grantee.peer, id]) {
    assert(!html.includes(secret), '/ui/ without a session shows ' + secret);
  }
  await shot(d, '09-no-session');
  await c.browser.close();
  await d.browser.close();

  // The owner watches the Live page while the grantee reads.
  await owner.page.goto(base + '/ui/live');
  await grantee.page.click(`#shared-records tr[data-id="${id}"] a`);
  await grantee.page.waitForSelector('form[action$="/content"] button');
  t = await text(grantee);
  assert(t.includes(uploadName) && t.includes('for treatment'), 'the grantee record page says: ' + t.slice(0, 400));
  await shot(grantee, '10-grantee-record');
  await audit(grantee, 'record (grantee)');
  await grantee.page.click('form[action$="/content"] button');
  const want = fs.statSync(cfg.upload).size;
  const got = path.join(grantee.downloads, uploadName);
  for (let i = 0; i < 600 && !(fs.existsSync(got) && fs.statSync(got).size === want); i++) await new Promise((r) => setTimeout(r, 100));
  assert(fs.existsSync(got) && fs.statSync(got).size === want, 'the download did not arrive: ' + fs.readdirSync(grantee.downloads));

  await owner.page.waitForFunction((org) => [...document.querySelectorAll('#live-list li[data-type="read"]')].some((li) => li.innerText.includes(org)),
    { timeout: 60000 }, cfg.grantee.org);
  await shot(owner, '11-owner-live-read');
  await audit(owner, 'live');

  // The read is in the owner's audit (the attestation reaches it about a
  // second after the read).
  let audited = false;
  for (let i = 0; i < 60 && !audited; i++) {
    await owner.page.goto(base + '/ui/records/' + id);
    audited = await owner.page.$$eval('table[aria-labelledby="audit-h"] tbody tr', (rows, org) => rows.some((r) => r.innerText.includes(org) && !r.innerText.includes('only the reader says so')), cfg.grantee.org);
    if (!audited) await new Promise((r) => setTimeout(r, 500));
  }
  assert(audited, "the grantee's read, attested, is not in the owner's audit");
  await shot(owner, '12-owner-audit');

  // Revoke; the grantee's records page marks it without a reload.
  await grantee.page.goto(gBase + '/ui/records');
  await grantee.page.waitForSelector(`#shared-records tr[data-id="${id}"]`);
  // From the Share page, which lists what is shared now.
  await owner.page.goto(base + '/ui/share');
  const current = await owner.page.$eval(`#current-grants tr[data-id="${id}"]`, (r) => r.innerText);
  assert(current.includes(uploadName) && current.includes(cfg.grantee.org) && current.includes('treatment'), 'the Share page lists: ' + current);
  await shot(owner, '13a-owner-share-current');
  await audit(owner, 'share (shared now)');
  await Promise.all([owner.page.waitForNavigation(), owner.page.click(`#current-grants tr[data-id="${id}"] button[aria-label*="${cfg.grantee.org}"]`)]);
  t = await text(owner);
  assert(new URL(owner.page.url()).pathname === '/ui/share', 'after the revoke the browser is at ' + owner.page.url());
  assert(t.includes('Revoked ' + cfg.grantee.org), 'no confirmation of the revoke: ' + t.slice(0, 300));
  assert(t.includes('What revoking does, and what it cannot do'), 'the page does not say what revocation can and cannot do');
  assert(!(await owner.page.$(`#current-grants tr[data-id="${id}"]`)), 'the Share page still lists the revoked grant');
  await shot(owner, '13-owner-revoked');
  await owner.page.goto(base + '/ui/records/' + id);
  t = await text(owner);
  assert(t.includes('Not shared with anyone.') && t.includes('What revoking does'), 'the record page after the revoke: ' + t.slice(0, 600));
  await shot(owner, '13b-owner-record-revoked');
  await grantee.page.waitForSelector(`#shared-records tr.revoked[data-id="${id}"]`, { timeout: 60000 });
  await shot(grantee, '14-grantee-revoked-live');

  // The other pages, for the record.
  await owner.page.goto(base + '/ui/records?q=' + encodeURIComponent(uploadName.slice(0, 5)));
  t = await text(owner);
  assert(t.includes(uploadName), 'search does not find the record');
  await shot(owner, '15-owner-records-search');
  await audit(owner, 'records (search)');
  await owner.page.goto(base + '/ui/imaging');
  await shot(owner, '16-owner-imaging');
  await audit(owner, 'imaging');
  if (cfg.study) {
    await owner.page.goto(base + '/ui/studies/' + cfg.study);
    t = await text(owner);
    assert(t.includes('Series') && t.includes('Export'), 'the study page shows no series: ' + t.slice(0, 300));
    await thumbsLoaded(owner);
    await shot(owner, '17-owner-study');
    await audit(owner, 'study');
    // Export: a zip of the original instances.
    await owner.page.click('form[action$="/export"] button');
    let zip = '';
    for (let i = 0; i < 600 && !zip; i++) {
      zip = fs.readdirSync(owner.downloads).find((f) => f.endsWith('.zip')) || '';
      if (!zip) await new Promise((r) => setTimeout(r, 100));
    }
    assert(zip, 'the study export did not download');
    // De-identify: a new study record, its page.
    await Promise.all([owner.page.waitForNavigation(), owner.page.click('form[action$="/deidentify"] button')]);
    t = await text(owner);
    assert(t.includes('De-identified copy added') && !owner.page.url().endsWith(cfg.study), 'de-identify: ' + t.slice(0, 300));
    await shot(owner, '17b-owner-study-deidentified');
    // The grantee (the study was shared with it) opens it: a read.
    await grantee.page.goto(gBase + '/ui/imaging');
    await grantee.page.waitForSelector(`a[href="/ui/studies/${cfg.study}"]`);
    await shot(grantee, '17c-grantee-imaging');
    await audit(grantee, 'imaging (grantee)');
    await grantee.page.click(`a[href="/ui/studies/${cfg.study}"]`);
    await grantee.page.waitForSelector('form[action$="/open"] button');
    await shot(grantee, '17d-grantee-study-closed');
    await Promise.all([grantee.page.waitForNavigation(), grantee.page.click('form[action$="/open"] button')]);
    t = await text(grantee);
    assert(t.includes('Series') && t.includes('CT'), 'the grantee study page shows no series: ' + t.slice(0, 300));
    await thumbsLoaded(grantee);
    await shot(grantee, '17e-grantee-study-open');
    await audit(grantee, 'study (grantee)');
  }
  await owner.page.goto(base + '/ui/research');
  t = await text(owner);
  assert(!cfg.dataset || (t.includes(cfg.dataset) && t.includes('in force')), 'the research page lacks the dataset or the consent: ' + t.slice(0, 400));
  await shot(owner, '18-owner-research');
  await audit(owner, 'research');
  if (cfg.dataset) {
    // The grantee fetches the dataset into a folder, with a progress bar.
    await grantee.page.goto(gBase + '/ui/research');
    await grantee.page.waitForSelector('#dataset');
    await grantee.page.type('#dir', cfg.fetch_dir);
    await Promise.all([grantee.page.waitForNavigation(), grantee.page.click('form[action="/ui/research/fetch"] button')]);
    await grantee.page.waitForSelector('#fetch-progress progress');
    await grantee.page.waitForFunction(() => /^Done/.test(document.querySelector('.fetch-status').textContent), { timeout: 120000 });
    const done = await grantee.page.$eval('#fetch-progress', (e) => [e.querySelector('progress').value, e.innerText]);
    assert(done[0] === 100 && done[1].includes('6 of 6 instances'), 'the fetch ended with: ' + done);
    await shot(grantee, '18b-grantee-dataset-fetched');
    await audit(grantee, 'research (fetch)');
  }
  // Error pages say what went wrong and what to do, in the console's
  // frame (the CSP check above covers their answers too).
  owner.allow = /status of 40[04]/;
  let res = await owner.page.goto(base + '/ui/records/not-a-record');
  t = await text(owner);
  assert(res.status() === 400 && t.includes('not a record ID') && t.includes('What to do'), 'a malformed record ID: ' + res.status() + ' ' + t.slice(0, 300));
  res = await owner.page.goto(base + '/ui/records/bafkreiaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa');
  t = await text(owner);
  assert(res.status() === 404 && t.includes('Not found') && t.includes('Unknown record') && t.includes('Back to the overview'), 'an unknown record: ' + res.status() + ' ' + t.slice(0, 300));
  await shot(owner, '19a-owner-error-unknown-record');
  await audit(owner, 'error page');
  res = await owner.page.goto(base + '/ui/no-such-page');
  assert(res.status() === 404, '/ui/no-such-page answered ' + res.status());
  owner.allow = null;
  await owner.page.goto(base + '/ui/');
  await shot(owner, '19-owner-overview-after');
  await grantee.page.goto(gBase + '/ui/live');
  await shot(grantee, '20-grantee-live');
  await audit(grantee, 'live (grantee)');

  return { record: id, download: got };
}

main().then(async (res) => {
  for (const b of browsers) await b.browser.close().catch(() => {});
  for (const b of browsers) fs.rmSync(b.dir, { recursive: true, force: true });
  console.log(JSON.stringify({ ok: failures.length === 0, failures, shots, checked, ...res }));
  process.exit(failures.length === 0 ? 0 : 1);
}, async (err) => {
  failures.push(err.stack || String(err));
  for (const b of browsers) {
    try { await shot(b, 'zz-failure-' + b.name); } catch (e) { /* closed */ }
    await b.browser.close().catch(() => {});
    fs.rmSync(b.dir, { recursive: true, force: true });
  }
  console.log(JSON.stringify({ ok: false, failures, shots, checked }));
  process.exit(1);
});
