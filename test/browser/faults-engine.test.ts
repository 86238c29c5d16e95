// Issue #8, engine faults in Chromium with brown-tiny-q4 kept in IndexedDB (`cache: true`). One profile, in order,
// each step starting from the state the one before left, so that SwiftShader's ~30 s of pipeline building for a new
// device is paid once (a test page hook counts bind groups and can destroy the device at one of them):
//  (b) a record flipped in IndexedDB: the load detects it by its SHA-256, fetches that record alone (counted here:
//      every request the page and its workers make), warns through onWarning, and the stored copy is whole again.
//  (d) the engine's own GPU device destroyed mid-request (at the first request's 10th bind group): the request
//      rejects with DeviceLostError; the next request makes a new device, reloads from IndexedDB with no request at
//      all, and gives the greedy reply of the undamaged model (so (b)'s repair is right, too). Then the new device
//      destroyed after the first content piece: that request rejects with DeviceLostError too.
//  (f) the page closed while a request runs (the one that reloads onto a new device, reading IndexedDB), and a
//      worker engine streaming experts from IndexedDB terminated 2 s into a request: after each, a reopened page
//      finds the store verified and loads it with no record request.
import type { BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserSkipReason, startBrowser, type BrowserSession } from '../helpers/browser.ts';
import { newProfile, openPage, type ProfilePage } from '../helpers/profiles.ts';

const skip = browserSkipReason();
const PAGE = '/test/browser/pages/faults.html';
const MODEL = '/models/brown-tiny-q4/';
const PROMPT = 'The jury said it did find that many of the voters were not qualified.';
const REPLY = "These weren't it??"; // test/browser/engine-cache.test.ts, test/gpu/engine.test.ts
const DAMAGED = 'L3.qkv_proj';

describe.skipIf(skip)('engine faults (chromium)', () => {
  let session: BrowserSession;
  let context: BrowserContext;
  let tp: ProfilePage;
  const requests: string[] = []; // every model request of the profile's pages and workers: `file[ range]`
  const since = (mark: number) => requests.slice(mark);
  const open = async () => (tp = await openPage(context, PAGE, 'faultsTest'));
  beforeAll(async () => {
    session = await startBrowser();
    context = await newProfile(session);
    context.on('request', (r) => {
      const url = new URL(r.url()), range = r.headers()['range'];
      if (url.pathname.startsWith(MODEL)) requests.push(`${url.pathname.slice(MODEL.length)}${range ? ` ${range}` : ''}`);
    });
    await open();
  });
  afterAll(async () => {
    await tp?.page.evaluate(() => window.faultsTest.unload()).catch(() => {});
    await session?.close();
  });

  it('(b) a record damaged in IndexedDB is detected at load, fetched again alone, and reported', async () => {
    expect((await tp.page.evaluate(() => window.faultsTest.download())).ok).toBe(true);
    await tp.page.evaluate((r) => window.faultsTest.corrupt(r), DAMAGED);
    expect(await tp.page.evaluate(() => window.faultsTest.verify())).toEqual([DAMAGED]);
    const mark = requests.length;
    const loaded = await tp.page.evaluate(() => window.faultsTest.load());
    const d = (await (await fetch(`${session.baseURL}${MODEL}manifest.json`)).json()).dense.find((t: { name: string }) => t.name === DAMAGED);
    expect(since(mark), 'the manifest, then the damaged record alone').toEqual(['manifest.json', `${d.file} bytes=${d.offset}-${d.offset + d.bytes - 1}`]);
    expect(loaded.warnings).toHaveLength(1);
    expect(loaded.warnings[0]).toMatch(new RegExp(`^The stored copy of ${DAMAGED} .*fails its SHA-256 check; it was fetched again from http`));
    expect(await tp.page.evaluate(() => window.faultsTest.verify()), 'the stored copy is whole again').toEqual([]);
    console.log(`[faults] damaged ${DAMAGED}: ${loaded.warnings[0]}`);
    expect(tp.errors).toEqual([]);
  });

  it('(d) a lost device fails the request with DeviceLostError; the next one reloads from IndexedDB and answers', async () => {
    const lost = await tp.page.evaluate((p) => window.faultsTest.reply(p, 16, { atBindGroup: 10 }), PROMPT);
    expect(lost.error?.name).toBe('DeviceLostError');
    expect(lost.error?.message).toMatch(/^The GPU device was lost \(.*\) during this request\. The next request reloads the model onto a new device\.$/);
    const mark = requests.length;
    const again = await tp.page.evaluate((p) => window.faultsTest.reply(p, 16), PROMPT);
    expect(again.error).toBeUndefined();
    expect(again.text).toBe(REPLY);
    expect(again.devices, 'a new device').toBe(lost.devices + 1);
    expect(since(mark), 'nothing fetched: reloaded from IndexedDB').toEqual([]);
    const midReply = await tp.page.evaluate((p) => window.faultsTest.reply(p, 16, { afterPieces: 1 }), PROMPT);
    expect(midReply).toMatchObject({ pieces: 1, error: { name: 'DeviceLostError' } });
    console.log(`[faults] device lost at bind group 10: "${lost.error!.message}"; the next request answered "${again.text}" on a new device with 0 requests; lost after the first piece ("${midReply.text}"): ${midReply.error!.name}`);
    expect(tp.errors).toEqual([]);
  });

  it('(f) the page closed mid-request, or the worker terminated mid-request, leaves the store intact', async () => {
    const reopenAndLoad = async () => {
      await open();
      expect(await tp.page.evaluate(() => window.faultsTest.verify())).toEqual([]);
      const mark = requests.length;
      expect((await tp.page.evaluate(() => window.faultsTest.load())).warnings).toEqual([]);
      expect(since(mark), 'the manifest only, no record').toEqual(['manifest.json']);
      await tp.page.evaluate(() => window.faultsTest.unload());
    };
    await tp.page.evaluate((p) => window.faultsTest.startReply(p), PROMPT); // reloads onto a new device first
    await new Promise((r) => setTimeout(r, 500));
    await tp.page.close();
    expect(tp.errors).toEqual([]);
    await reopenAndLoad();

    expect((await tp.page.evaluate(() => window.faultsTest.load(true, 64 << 10))).warnings).toEqual([]); // experts stream from IndexedDB
    await tp.page.evaluate((p) => window.faultsTest.startReply(p), PROMPT);
    await new Promise((r) => setTimeout(r, 2000));
    const chunks = await tp.page.evaluate(() => window.faultsTest.replying());
    await tp.page.evaluate(() => window.faultsTest.terminateWorker());
    await tp.page.close();
    expect(tp.errors).toEqual([]);
    await reopenAndLoad();
    console.log(`[faults] page closed 0.5 s into a request, worker terminated 2 s into one (${chunks} chunks in): store verified, reloaded with no record fetched`);
    expect(tp.errors).toEqual([]);
  });
});
