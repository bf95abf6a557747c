/* The browser test call: the page is Twilio's side of a Media Streams call (connected, start, media, mark,
   stop) over a WebSocket to the bridge's /media-stream, authenticated by a staff-issued single-use token.
   Microphone → AudioWorklet (8 kHz, 20 ms frames) → G.711 μ-law → base64 `media`. The agent's `media` is
   decoded and scheduled gap-free; its `mark`s are echoed when the audio before them has played, and
   `clear` drops what is queued (and echoes the pending marks, as Twilio does). The transcript comes from
   the dashboard's live feed for this call. */
(function () {
  "use strict";

  var root = document.getElementById("test-call");
  if (!root || !root.getAttribute("data-start-url")) return;
  var startButton = document.getElementById("tc-start");
  var hangupButton = document.getElementById("tc-hangup");
  var stateNode = document.getElementById("tc-state");
  var levelNode = document.getElementById("tc-level");
  var transcript = document.getElementById("tc-transcript");
  var callLink = document.getElementById("tc-call-link");

  /* --- G.711 μ-law (ITU-T G.711, the bias-0x84 form) ------------------------------------------------ */
  var BIAS = 0x84, CLIP = 32635;
  function linearToUlaw(sample) {  // sample: signed 16-bit integer
    var sign = (sample >> 8) & 0x80;
    if (sign) sample = -sample;
    if (sample > CLIP) sample = CLIP;
    sample += BIAS;
    var exponent = 7;
    for (var mask = 0x4000; (sample & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
    var mantissa = (sample >> (exponent + 3)) & 0x0f;
    return ~(sign | (exponent << 4) | mantissa) & 0xff;
  }
  var ULAW_TO_FLOAT = new Float32Array(256);
  for (var u = 0; u < 256; u++) {
    var v = ~u & 0xff;
    var t = (((v & 0x0f) << 3) + BIAS) << ((v & 0x70) >> 4);
    ULAW_TO_FLOAT[u] = ((v & 0x80) ? (BIAS - t) : (t - BIAS)) / 32768;
  }

  function toBase64(bytes) {
    var text = "";
    for (var i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text);
  }
  function fromBase64(b64) {
    var text = atob(b64), bytes = new Uint8Array(text.length);
    for (var i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    return bytes;
  }
  function sid(prefix) {
    var hex = "";
    crypto.getRandomValues(new Uint8Array(16)).forEach(function (b) { hex += (b + 256).toString(16).slice(1); });
    return prefix + hex;
  }

  /* --- state shown to the user (and to tests, via data attributes) ---------------------------------- */
  var stats = { sent: 0, received: 0, played: 0, cleared: 0, marks: 0 };
  function setState(state, text) {
    stateNode.setAttribute("data-state", state);
    stateNode.textContent = text;
    root.setAttribute("data-state", state);
  }
  function publishStats() {
    Object.keys(stats).forEach(function (key) { root.setAttribute("data-" + key, String(stats[key])); });
  }

  function addLine(kind, text, seq) {
    if (!text) return;
    if (seq !== undefined && transcript.querySelector('[data-seq="' + seq + '"]')) return;
    var item = document.createElement("div");
    item.className = "vo-turn vo-" + kind;
    if (seq !== undefined) item.setAttribute("data-seq", seq);
    var bubble = document.createElement("div");
    bubble.className = "vo-bubble";
    var who = document.createElement("span");
    who.className = "vo-who";
    who.textContent = kind === "caller" ? "You" : "Agent";
    var p = document.createElement("p");
    p.textContent = text;
    bubble.appendChild(who);
    bubble.appendChild(p);
    item.appendChild(bubble);
    transcript.appendChild(item);
    transcript.scrollTop = transcript.scrollHeight;
  }

  /* --- one call ------------------------------------------------------------------------------------ */
  var call = null;

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function start() {
    startButton.disabled = true;
    transcript.textContent = "";
    stats = { sent: 0, received: 0, played: 0, cleared: 0, marks: 0 };
    publishStats();
    setState("starting", "Asking for the microphone…");
    if (!window.AudioWorkletNode || !navigator.mediaDevices) {
      fail("This browser cannot capture audio here (it needs AudioWorklet and a secure origin: https or localhost).");
      return;
    }
    var session = { ws: null, audio: null, mic: null, node: null, playhead: 0, sources: [], marks: [],
                    seq: 0, chunk: 0, t0: 0, streamSid: sid("MZ"), feed: null, ended: false, info: null };
    call = session;
    navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: false },
    }).then(function (mic) {
      session.mic = mic;
      session.audio = new AudioContext();
      return session.audio.audioWorklet.addModule(root.getAttribute("data-worklet-url"));
    }).then(function () {
      setState("starting", "Starting the call…");
      return fetch(root.getAttribute("data-start-url"), {
        method: "POST", credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(), "Accept": "application/json" },
      });
    }).then(function (response) {
      if (!response.ok) throw new Error("the server refused to start a test call (HTTP " + response.status + ")");
      return response.json();
    }).then(function (info) {
      if (session.ended) return;
      session.info = info;
      callLink.hidden = false;
      var link = callLink.querySelector("a");
      link.href = info.call_url;
      link.textContent = info.call_sid;
      openFeed(session, info);
      openStream(session, info);
    }).catch(function (error) {
      fail(error && error.name === "NotAllowedError" ? "Microphone access was denied." : String(error.message || error));
    });
  }

  function send(session, message) {
    if (session.ws && session.ws.readyState === WebSocket.OPEN) session.ws.send(JSON.stringify(message));
  }

  function openStream(session, info) {
    var ws = new WebSocket(info.stream_url);
    session.ws = ws;
    ws.onopen = function () {
      send(session, { event: "connected", protocol: "Call", version: "1.0.0" });
      session.seq = 1;
      send(session, {
        event: "start", sequenceNumber: "1", streamSid: session.streamSid,
        start: {
          streamSid: session.streamSid, accountSid: info.account_sid, callSid: info.call_sid, tracks: ["inbound"],
          customParameters: { token: info.token },
          mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
        },
      });
      startMic(session);
      setState("live", "Connected: talk to the agent.");
      startButton.hidden = true;
      hangupButton.hidden = false;
    };
    ws.onmessage = function (message) { onServer(session, message.data); };
    ws.onclose = function (event) {
      if (session.ended) return;
      var why = event.code === 1000 || event.code === 1005 ? "The agent ended the call."
        : "The call ended (" + event.code + (event.reason ? ": " + event.reason : "") + ").";
      finish(session, event.code >= 4000 ? "error" : "ended", why);
    };
  }

  function startMic(session) {
    var source = session.audio.createMediaStreamSource(session.mic);
    var node = new AudioWorkletNode(session.audio, "mic-to-8k");
    session.node = node;
    session.t0 = performance.now();
    var payload = new Uint8Array(160);
    node.port.onmessage = function (event) {
      var frame = event.data, peak = 0;
      for (var i = 0; i < 160; i++) {
        var s = Math.max(-1, Math.min(1, frame[i]));
        peak = Math.max(peak, Math.abs(s));
        payload[i] = linearToUlaw(Math.round(s * 32767));
      }
      levelNode.style.width = Math.min(100, Math.round(peak * 140)) + "%";
      session.seq += 1;
      send(session, {
        event: "media", sequenceNumber: String(session.seq), streamSid: session.streamSid,
        media: { track: "inbound", chunk: String(++session.chunk), timestamp: String(session.chunk * 20),
                 payload: toBase64(payload) },
      });
      stats.sent += 1;
      if (stats.sent % 25 === 0) publishStats();
    };
    source.connect(node);
    // The worklet has no audible output; connecting it keeps the graph pulling the microphone.
    var mute = session.audio.createGain();
    mute.gain.value = 0;
    node.connect(mute).connect(session.audio.destination);
  }

  function onServer(session, text) {
    var message;
    try { message = JSON.parse(text); } catch (e) { return; }
    if (message.event === "media" && message.media) {
      play(session, fromBase64(message.media.payload));
    } else if (message.event === "mark" && message.mark) {
      // Echoed once everything queued before it has played.
      session.marks.push({ name: message.mark.name, at: Math.max(session.playhead, session.audio.currentTime) });
      scheduleMarks(session);
    } else if (message.event === "clear") {
      clearPlayback(session);
    }
  }

  function play(session, ulaw) {
    var audio = session.audio;
    var buffer = audio.createBuffer(1, ulaw.length, 8000);
    var data = buffer.getChannelData(0);
    for (var i = 0; i < ulaw.length; i++) data[i] = ULAW_TO_FLOAT[ulaw[i]];
    var source = audio.createBufferSource();
    source.buffer = buffer;
    source.connect(audio.destination);
    var at = Math.max(session.playhead, audio.currentTime + 0.05);
    source.start(at);
    session.playhead = at + buffer.duration;
    session.sources.push(source);
    source.onended = function () {
      var index = session.sources.indexOf(source);
      if (index >= 0) session.sources.splice(index, 1);
      if (!source.cleared) { stats.played += ulaw.length; publishStats(); }
    };
    stats.received += ulaw.length;
    publishStats();
    setState("live", "The agent is speaking…");
  }

  function scheduleMarks(session) {
    if (session.markTimer) return;
    session.markTimer = setInterval(function () {
      var now = session.audio.currentTime;
      while (session.marks.length && session.marks[0].at <= now) echoMark(session, session.marks.shift().name);
      if (!session.marks.length) {
        clearInterval(session.markTimer);
        session.markTimer = null;
        if (!session.ended) setState("live", "Listening…");
      }
    }, 20);
  }

  function echoMark(session, name) {
    send(session, { event: "mark", sequenceNumber: String(++session.seq), streamSid: session.streamSid,
                    mark: { name: name } });
    stats.marks += 1;
    publishStats();
  }

  function clearPlayback(session) {
    session.sources.forEach(function (source) { source.cleared = true; try { source.stop(); } catch (e) {} });
    session.sources = [];
    session.playhead = session.audio.currentTime;
    while (session.marks.length) echoMark(session, session.marks.shift().name);
    stats.cleared += 1;
    publishStats();
  }

  function openFeed(session, info) {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var feed = new WebSocket(scheme + location.host + info.live_path);
    session.feed = feed;
    feed.onmessage = function (message) {
      var data;
      try { data = JSON.parse(message.data); } catch (e) { return; }
      var ev = data.event;
      if (ev && (ev.kind === "caller" || ev.kind === "agent")) addLine(ev.kind, ev.text, ev.seq);
    };
  }

  function hangUp() {
    if (!call) return;
    var session = call;
    send(session, { event: "stop", sequenceNumber: String(++session.seq), streamSid: session.streamSid,
                    stop: { accountSid: session.info ? session.info.account_sid : "", callSid: session.info ? session.info.call_sid : "" } });
    finish(session, "ended", "You hung up.");
  }

  function finish(session, state, text) {
    if (session.ended) return;
    session.ended = true;
    if (session.node) session.node.port.onmessage = null;
    if (session.mic) session.mic.getTracks().forEach(function (track) { track.stop(); });
    if (session.ws && session.ws.readyState <= WebSocket.OPEN) session.ws.close(1000);
    if (session.markTimer) clearInterval(session.markTimer);
    // Let the agent's last words play out and the last transcript lines arrive before closing.
    setTimeout(function () {
      if (session.feed) session.feed.close();
      if (session.audio) session.audio.close();
    }, 4000);
    publishStats();
    setState(state, text);
    levelNode.style.width = "0";
    startButton.hidden = false;
    startButton.disabled = false;
    hangupButton.hidden = true;
  }

  function fail(text) {
    if (call) finish(call, "error", text);
    else setState("error", text);
    startButton.disabled = false;
  }

  startButton.addEventListener("click", start);
  hangupButton.addEventListener("click", hangUp);
  window.addEventListener("beforeunload", hangUp);
})();
