// The load generator for the server comparison: N simulated Twilio Media Streams calls, the same for every system.
//   node loadgen.mjs CONFIG.json   → one JSON result on stdout
// CONFIG: {calls: [{url, headers, parameters, callSid, accountSid}], rampS, holdS, graceS, pids: [...], core}
// Each call sends a 20 ms μ-law frame every 20 ms from its start (ramped over rampS) until the common end,
// numbered in its first 4 payload bytes; the upstream simulator echoes it back as agent audio, so each frame's
// round trip, loss and order are measured. Marks are answered at once, as Twilio does once audio has played.
// CPU and RSS of `pids` are read from /proc over the steady window (every call up: rampS + 1 s to the end), and
// the busy share of their core (`core`), so that other work on that core shows.
import { readFileSync } from 'node:fs';
import { WebSocket } from 'ws';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const FRAME_MS = 20;
const FRAME_BYTES = 160;
const CLK_TCK = 100;
const now = () => performance.now();

function procCpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(')').pop().trim().split(/\s+/);
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}
function procRssKb(pid) {
  const match = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) : 0;
}
const sum = (f) => config.pids.reduce((total, pid) => total + f(pid), 0);
// [busy, total] jiffies of the system's core: what else ran there shows how much the machine interfered.
function coreJiffies(core) {
  const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`cpu${core} `));
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  const total = values.reduce((a, b) => a + b, 0);
  return [total - values[3] - values[4], total];
}
function percentile(sorted, q) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null;
}

const t0 = now();
const steadyFrom = t0 + (config.rampS + 1) * 1000;
const endAt = t0 + (config.rampS + config.holdS) * 1000;
const maxFrames = Math.ceil((config.rampS + config.holdS) * 1000 / FRAME_MS) + 10;
const rtts = [];
const lateness = [];
const totals = { sent: 0, received: 0, lost: 0, reordered: 0, unknown: 0, marks: 0, errors: [], setupMs: [] };

function runCall(spec, index) {
  return new Promise((resolve) => {
    const startedAt = now();
    const streamSid = `MZ${String(index).padStart(32, '0')}`;
    const sentAt = new Float64Array(maxFrames);
    const received = new Uint8Array(maxFrames);
    const frame = Buffer.alloc(FRAME_BYTES, 0xff);
    frame.writeUInt32BE(index, 4);
    let seq = 0;
    let lastSeq = -1;
    let firstEchoed = -1;
    let timer = null;
    let finished = false;
    const socket = new WebSocket(spec.url, { headers: spec.headers || {}, perMessageDeflate: false });

    const finish = (error) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      if (error) totals.errors.push(error);
      if (firstEchoed >= 0) {
        for (let s = firstEchoed; s < seq; s += 1) if (!received[s]) totals.lost += 1;
      } else if (!error) {
        totals.errors.push('no frame came back');
      }
      totals.sent += seq;
      resolve();
    };

    const sendFrame = (time) => {
      frame.writeUInt32BE(seq, 0);
      sentAt[seq] = time;
      const ts = seq * FRAME_MS;
      socket.send(`{"event":"media","sequenceNumber":"${seq + 3}","media":{"track":"inbound","chunk":"${seq + 1}",`
        + `"timestamp":"${ts}","payload":"${frame.toString('base64')}"},"streamSid":"${streamSid}"}`);
      seq += 1;
    };
    const tick = () => {
      const time = now();
      if (time >= endAt) {
        // Let the last frames come back, then hang up as Twilio does.
        timer = setTimeout(() => {
          socket.send(JSON.stringify({ event: 'stop', sequenceNumber: String(seq + 3), streamSid,
            stop: { accountSid: spec.accountSid, callSid: spec.callSid } }));
          socket.close(1000);
          finish();
        }, config.graceS * 1000);
        return;
      }
      const due = startedAt + seq * FRAME_MS;
      if (time >= steadyFrom) lateness.push(time - due);
      while (startedAt + seq * FRAME_MS <= time && seq < maxFrames) sendFrame(time);
      timer = setTimeout(tick, Math.max(0, startedAt + seq * FRAME_MS - now()));
    };

    socket.on('open', () => {
      socket.send('{"event":"connected","protocol":"Call","version":"1.0.0"}');
      socket.send(JSON.stringify({
        event: 'start', sequenceNumber: '1', streamSid,
        start: { accountSid: spec.accountSid, streamSid, callSid: spec.callSid, tracks: ['inbound'],
          customParameters: spec.parameters || {},
          mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } },
      }));
      tick();
    });
    socket.on('message', (data) => {
      const time = now();
      const message = JSON.parse(data);
      if (message.event === 'media') {
        const head = Buffer.from(message.media.payload.slice(0, 12), 'base64');
        const echoed = head.readUInt32BE(0);
        if (head.readUInt32BE(4) !== index || echoed >= seq) {
          totals.unknown += 1;
          return;
        }
        totals.received += 1;
        if (firstEchoed < 0) {
          firstEchoed = echoed;
          totals.setupMs.push(time - startedAt);
        }
        if (echoed <= lastSeq) totals.reordered += 1;
        else lastSeq = echoed;
        received[echoed] = 1;
        if (time >= steadyFrom && time <= endAt) rtts.push(time - sentAt[echoed]);
      } else if (message.event === 'mark') {
        totals.marks += 1;
        socket.send(`{"event":"mark","sequenceNumber":"${seq + 3}","streamSid":"${streamSid}",`
          + `"mark":{"name":${JSON.stringify(message.mark.name)}}}`);
      }
    });
    socket.on('close', (code, reason) => {
      if (!finished && now() < endAt) finish(`closed ${code} ${reason}`.trim());
    });
    socket.on('error', (error) => finish(`error ${error.message}`));
  });
}

const idleRssKb = sum(procRssKb);
const calls = [];
config.calls.forEach((spec, index) => {
  const delay = (config.rampS * 1000 * index) / config.calls.length;
  calls.push(new Promise((resolve) => setTimeout(() => runCall(spec, index).then(resolve), delay)));
});

let cpuStart = null;
let cpuEnd = null;
let rssKb = null;
setTimeout(() => { cpuStart = [now(), sum(procCpuSeconds), coreJiffies(config.core)]; },
  Math.max(0, steadyFrom - now()));
setTimeout(() => {
  cpuEnd = [now(), sum(procCpuSeconds), coreJiffies(config.core)];
  rssKb = sum(procRssKb);
}, Math.max(0, endAt - now() - 200));

await Promise.all(calls);
rtts.sort((a, b) => a - b);
lateness.sort((a, b) => a - b);
// The calls may all have failed before the window: then there is no CPU figure.
const coreShare = cpuStart && cpuEnd ? (cpuEnd[1] - cpuStart[1]) / ((cpuEnd[0] - cpuStart[0]) / 1000) : null;
const coreBusy = cpuStart && cpuEnd
  ? (cpuEnd[2][0] - cpuStart[2][0]) / (cpuEnd[2][1] - cpuStart[2][1]) : null;
const n = config.calls.length;
console.log(JSON.stringify({
  calls: n,
  cpu_core_share: coreShare,
  core_busy_share: coreBusy,
  other_work_on_core: coreBusy === null || coreShare === null ? null : Math.max(0, coreBusy - coreShare),
  cpu_pct_per_call: coreShare === null ? null : (coreShare * 100) / n,
  rtt_ms: { p50: percentile(rtts, 0.5), p99: percentile(rtts, 0.99), max: rtts[rtts.length - 1] ?? null,
    count: rtts.length },
  send_late_ms_p99: percentile(lateness, 0.99),
  rss_idle_kb: idleRssKb,
  rss_kb: rssKb,
  rss_per_call_kb: rssKb === null ? null : (rssKb - idleRssKb) / n,
  setup_ms: { p50: percentile(totals.setupMs.sort((a, b) => a - b), 0.5), max: Math.max(...totals.setupMs) },
  frames_sent: totals.sent,
  frames_received: totals.received,
  frames_lost: totals.lost,
  frames_reordered: totals.reordered,
  frames_unknown: totals.unknown,
  marks: totals.marks,
  errors: totals.errors,
}));
process.exit(0);
