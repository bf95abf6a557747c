/* voiceops staff dashboard: the live feed (WebSocket, with a polling fallback) and small helpers.
   No framework, no build step. */
(function () {
  "use strict";

  var body = document.body;

  /* --- helpers ------------------------------------------------------------------------------ */

  function mmss(ms) {
    var total = Math.max(0, Math.floor((Number(ms) || 0) / 1000));
    var h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return h ? h + ":" + pad(m) + ":" + pad(s) : pad(m) + ":" + pad(s);
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function banner(message) {
    var node = document.getElementById("vo-banner");
    if (!node) return;
    node.textContent = message || "";
    node.hidden = !message;
  }

  /* Fetch as the logged-in user; an expired session shows as a redirect to the login page. */
  function fetchAsStaff(url) {
    return fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (response.redirected || response.status === 401 || response.status === 403) {
          banner("Your session has expired. Reload the page to log in again.");
          throw new Error("not logged in");
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        banner("");
        return response;
      });
  }

  /* Durations that tick: <span data-since="ISO8601">. */
  function tickDurations() {
    var now = Date.now();
    document.querySelectorAll("[data-since]").forEach(function (node) {
      var since = Date.parse(node.getAttribute("data-since"));
      if (!isNaN(since)) node.textContent = mmss(now - since);
    });
  }

  /* --- the live feed ------------------------------------------------------------------------ */

  /* The live feed's heartbeat (calls/live_feed.py): {"what": "heartbeat", "interval_s": N}, sent by the server
     on a quiet line so that no proxy or load balancer sees an idle socket. */
  var HEARTBEAT = "heartbeat";
  var MISSED_HEARTBEATS = 3;  // no frame at all for this many intervals: the socket is dead, even without a close
  var RETRY_FIRST_MS = 1000, RETRY_MAX_MS = 30000;

  /* Opens /dashboard/live; whenever the socket is not open, polls instead. Reconnects with backoff (jittered, so
     that the pages a deploy or a proxy cut off do not all come back at once); the backoff starts afresh only once
     a socket has carried a frame, so one that a proxy cuts straight after opening does not reconnect every second.
     Heartbeats are not passed on: they only prove the socket alive. */
  function LiveFeed(query, handlers, pollMs) {
    this.query = query || "";
    this.onMessage = handlers.onMessage;
    this.onPoll = handlers.onPoll;
    this.pollMs = pollMs;
    this.retryMs = RETRY_FIRST_MS;
    this.socket = null;
    this.pollTimer = null;
    this.watchdog = null;
    this.silenceMs = 0;  // learnt from the heartbeats; 0 until the first one
    this.stopped = false;
    this.stateNode = document.getElementById("feed-state");
  }

  LiveFeed.prototype.setState = function (state, label) {
    if (!this.stateNode) return;
    this.stateNode.setAttribute("data-state", state);
    this.stateNode.textContent = label;
  };

  LiveFeed.prototype.start = function () {
    if (!("WebSocket" in window)) { this.startPolling(); return; }
    this.connect();
  };

  LiveFeed.prototype.connect = function () {
    var self = this;
    if (self.stopped) return;
    var scheme = location.protocol === "https:" ? "wss:" : "ws:";
    var socket;
    try {
      socket = new WebSocket(scheme + "//" + location.host + "/dashboard/live" + self.query);
    } catch (err) {
      self.startPolling();
      return;
    }
    self.socket = socket;
    socket.onopen = function () {
      if (socket !== self.socket) return;
      self.stopPolling();
      self.setState("live", "live");
      self.onPoll();  // catch up on anything missed while disconnected
      self.watch();
    };
    socket.onmessage = function (event) {
      if (socket !== self.socket) return;
      self.retryMs = RETRY_FIRST_MS;  // this socket works: a later cut starts the backoff afresh
      var message;
      try { message = JSON.parse(event.data); } catch (err) { self.watch(); return; }
      if (message && message.what === HEARTBEAT) {
        self.silenceMs = MISSED_HEARTBEATS * 1000 * (Number(message.interval_s) || 0);
      } else {
        self.onMessage(message);
      }
      self.watch();
    };
    socket.onclose = function (event) {
      if (socket !== self.socket) return;  // already given up on (see watch)
      self.lost(event.code);
    };
  };

  /* (Re)arms the silence timer: a socket that stops carrying heartbeats is dropped and opened again at once,
     rather than waiting for a close that a dead connection may deliver minutes later, or never. */
  LiveFeed.prototype.watch = function () {
    var self = this, socket = self.socket;
    clearTimeout(self.watchdog);
    self.watchdog = null;
    if (!socket || !self.silenceMs) return;
    self.watchdog = setTimeout(function () {
      if (socket !== self.socket) return;
      socket.onclose = null;
      try { socket.close(); } catch (err) { /* closing anyway */ }
      self.lost(null);
    }, self.silenceMs);
  };

  LiveFeed.prototype.lost = function (code) {
    var self = this;
    clearTimeout(self.watchdog);
    self.watchdog = null;
    self.socket = null;
    if (self.stopped) return;
    self.startPolling();
    if (code === 4403) return;  // not allowed: polling (same session check) says why
    var delay = self.retryMs / 2 + Math.random() * self.retryMs / 2;
    setTimeout(function () { self.connect(); }, delay);
    self.retryMs = Math.min(self.retryMs * 2, RETRY_MAX_MS);
  };

  LiveFeed.prototype.startPolling = function () {
    var self = this;
    if (self.pollTimer || self.stopped) return;
    self.setState("polling", "updating every " + Math.round(self.pollMs / 1000) + " s");
    self.onPoll();
    self.pollTimer = setInterval(function () { self.onPoll(); }, self.pollMs);
  };

  LiveFeed.prototype.stopPolling = function () {
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = null;
  };

  LiveFeed.prototype.stop = function (label) {
    this.stopped = true;
    this.stopPolling();
    clearTimeout(this.watchdog);
    if (this.socket) this.socket.close(1000);
    this.setState("ended", label || "ended");
  };

  /* --- page: live calls --------------------------------------------------------------------- */

  function liveCallsPage() {
    var container = document.getElementById("live-calls");
    var url = body.getAttribute("data-live-url");
    var lastLines = {};  // call id → the latest transcript line, kept across table refreshes
    var pending = null;

    function applyLastLines() {
      container.querySelectorAll("tr[data-call-id]").forEach(function (row) {
        var line = lastLines[row.getAttribute("data-call-id")];
        var cell = row.querySelector("[data-last-line]");
        if (line && cell) cell.textContent = line;
      });
    }

    function refresh() {
      fetchAsStaff(url).then(function (response) { return response.text(); }).then(function (html) {
        container.innerHTML = html;  // rendered by our own server template
        applyLastLines();
        tickDurations();
      }).catch(function () {});
    }

    function refreshSoon() {
      if (pending) return;
      pending = setTimeout(function () { pending = null; refresh(); }, 250);
    }

    var feed = new LiveFeed("", {
      onMessage: function (message) {
        var ev = message.event;
        if (ev && (ev.kind === "caller" || ev.kind === "agent") && ev.text) {
          lastLines[message.call_id] = (ev.kind === "caller" ? "Caller: " : "Agent: ") + ev.text;
        }
        var row = container.querySelector('tr[data-call-id="' + Number(message.call_id) + '"]');
        if (message.what === "event" && row) { applyLastLines(); return; }
        refreshSoon();  // a call started or ended, or one we have not listed yet
      },
      onPoll: refresh,
    }, 5000);
    feed.start();
  }

  /* --- page: one call's transcript ---------------------------------------------------------- */

  function callPage() {
    var labels = JSON.parse((document.getElementById("vo-labels") || {}).textContent || "{}");
    var list = document.querySelector(".vo-transcript");
    var scroller = document.getElementById("transcript-scroll");
    var eventsUrl = body.getAttribute("data-events-url");
    var lastSeq = parseInt(body.getAttribute("data-last-seq"), 10);
    if (isNaN(lastSeq)) lastSeq = -1;
    var seen = {};
    list.querySelectorAll("[data-seq]").forEach(function (node) { seen[node.getAttribute("data-seq")] = true; });

    function summary(ev) {
      if (ev.text) return ev.text;
      var data = ev.data || {}, parts = [];
      ["name", "arguments", "output", "error", "message", "digit"].forEach(function (key) {
        if (data[key]) parts.push(typeof data[key] === "string" ? data[key] : JSON.stringify(data[key]));
      });
      return parts.join(" · ");
    }

    /* Mirrors templates/calls/_event.html. */
    function render(ev) {
      var isTurn = ev.kind === "caller" || ev.kind === "agent";
      var item = el("li", (isTurn ? "vo-turn vo-" : "vo-sys vo-") + ev.kind);
      item.setAttribute("data-seq", ev.seq);
      if (isTurn) {
        var bubble = el("div", "vo-bubble");
        var who = el("span", "vo-who", ev.kind === "caller" ? "Caller" : "Agent");
        who.appendChild(el("time", null, mmss(ev.t_ms)));
        bubble.appendChild(who);
        var text = el("p");
        String(ev.text || "").split("\n").forEach(function (line, i) {
          if (i) text.appendChild(document.createElement("br"));
          text.appendChild(document.createTextNode(line));
        });
        bubble.appendChild(text);
        item.appendChild(bubble);
      } else {
        item.appendChild(el("time", null, mmss(ev.t_ms)));
        item.appendChild(document.createTextNode(" "));
        item.appendChild(el("span", "vo-label", (labels.kinds || {})[ev.kind] || ev.kind));
        item.appendChild(document.createTextNode(" "));
        item.appendChild(el("span", "vo-text", summary(ev)));
        if (ev.data && Object.keys(ev.data).length) {
          var details = el("details");
          details.appendChild(el("summary", null, "details"));
          details.appendChild(el("pre", null, JSON.stringify(ev.data, null, 2)));
          item.appendChild(details);
        }
      }
      return item;
    }

    function append(ev) {
      if (seen[ev.seq]) return;
      seen[ev.seq] = true;
      var atBottom = scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 40;
      var empty = list.querySelector(".vo-empty");
      if (empty) empty.remove();
      var node = render(ev);
      // Events can arrive out of order (socket and poll racing): keep the list sorted by seq.
      var after = null;
      list.querySelectorAll("[data-seq]").forEach(function (other) {
        if (after === null && Number(other.getAttribute("data-seq")) > ev.seq) after = other;
      });
      list.insertBefore(node, after);
      lastSeq = Math.max(lastSeq, ev.seq);
      if (atBottom) scroller.scrollTop = scroller.scrollHeight;
    }

    function showCall(call) {
      if (!call) return;
      var status = document.querySelector("#call-status .status");
      if (status && call.status) {
        status.className = "status status-" + call.status;
        status.textContent = call.status_label || (labels.statuses || {})[call.status] || call.status;
      }
      if (call.end_reason) {
        var reason = document.getElementById("call-end-reason");
        if (reason) reason.textContent = call.end_reason_label || (labels.end_reasons || {})[call.end_reason] || call.end_reason;
      }
      if (call.duration_s !== undefined && call.duration_s !== null) {
        var duration = document.getElementById("call-duration");
        if (duration) duration.textContent = mmss(call.duration_s * 1000);
      }
      var tokens = document.getElementById("call-tokens");
      if (tokens && call.input_tokens !== undefined) {
        tokens.textContent = call.input_tokens + " in · " + call.output_tokens + " out";
      }
    }

    var feed, settling = false;
    function poll() {
      fetchAsStaff(eventsUrl + "?after=" + lastSeq).then(function (r) { return r.json(); }).then(function (payload) {
        (payload.events || []).forEach(append);
        showCall(payload.call);
        if (payload.call && payload.call.is_live === false && !settling) {
          // Twilio's status callback and the bridge's own record of the end (reason, duration, tokens)
          // land separately: look again a little later so the page ends up with both, without a reload.
          settling = true;
          feed.stop("call ended");
          [1500, 4000, 9000].forEach(function (ms) { setTimeout(poll, ms); });
        }
      }).catch(function () {});
    }

    if (body.getAttribute("data-live") !== "1") return;
    feed = new LiveFeed("?call=" + encodeURIComponent(body.getAttribute("data-call-id")), {
      onMessage: function (message) {
        var ev = message.event;
        if (ev && typeof ev.seq === "number") {
          if (ev.seq > lastSeq + 1) poll();  // a gap: fetch what was missed, in order
          append(ev);
        }
        if (message.call) showCall(message.call);
        if (message.what === "ended") {
          // Picks up the final status and stops the feed; again a moment later in case the
          // bridge's database write lands after its live message.
          poll();
          setTimeout(poll, 1500);
        }
      },
      onPoll: poll,
    }, 3000);
    feed.start();
    scroller.scrollTop = scroller.scrollHeight;
  }

  /* --- page: call history ------------------------------------------------------------------ */

  /* Rows of calls still live are refreshed until they end: status, duration, end reason, tokens. */
  function historyPage() {
    var rows = document.querySelectorAll('tr[data-live="1"]');
    if (!rows.length) return;
    var eventsUrl = body.getAttribute("data-events-url-template");
    var timer = setInterval(function () {
      var live = document.querySelectorAll('tr[data-live="1"]');
      if (!live.length) { clearInterval(timer); return; }
      live.forEach(function (row) {
        var url = eventsUrl.replace("/0/", "/" + row.getAttribute("data-call-id") + "/") + "?after=2147483647";
        fetchAsStaff(url).then(function (r) { return r.json(); }).then(function (payload) {
          var call = payload.call;
          if (!call) return;
          var status = row.querySelector('[data-field="status"] .status');
          if (status) {
            status.className = "status status-" + call.status;
            status.textContent = call.status_label;
          }
          if (call.duration_s !== null) row.querySelector('[data-field="duration"]').textContent = mmss(call.duration_s * 1000);
          if (call.end_reason) row.querySelector('[data-field="end_reason"]').textContent = call.end_reason_label;
          row.querySelector('[data-field="tokens"]').textContent = call.input_tokens + call.output_tokens;
          // Ended: look once more for the bridge's final record, then stop.
          if (!call.is_live) {
            if (row.getAttribute("data-settled")) row.removeAttribute("data-live");
            row.setAttribute("data-settled", "1");
          }
        }).catch(function () {});
      });
    }, 3000);
  }

  /* --- small page helpers ------------------------------------------------------------------- */

  function wireHelpers() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () {
        if (select.name === "config") {
          var number = select.form.querySelector('select[name="number"]');
          if (number) number.disabled = true;  // the number list belongs to the previous config
        }
        select.form.submit();
      });
    });
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var source = document.querySelector(button.getAttribute("data-copy"));
        var text = source ? source.textContent.trim() : "";
        var done = function () { button.textContent = "Copied"; setTimeout(function () { button.textContent = "Copy"; }, 1500); };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () {});
        } else {
          var range = document.createRange();
          range.selectNodeContents(source);
          var selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
          try { document.execCommand("copy"); done(); } catch (err) { /* the text stays selected */ }
        }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    wireHelpers();
    tickDurations();
    setInterval(tickDurations, 1000);
    var page = body.getAttribute("data-page");
    if (page === "live") liveCallsPage();
    if (page === "call") callPage();
    if (page === "history") historyPage();
  });
})();
