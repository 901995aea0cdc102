// live.js: live updates for gbb's pages, from /sse/. The pages work without
// it; it only keeps them current.
//
// <body data-live="builds/*/* steps/*/*"> lists the /sse/listen paths a page
// follows. On an event, the page is fetched again (at most once per 500 ms)
// and each element marked data-live-region is replaced by its new version,
// matched by id; forms outside those regions keep what was typed in them.
// On a build page (data-buildid), step events of other builds are ignored.
// A log page that shows the log's end (#log[data-follow]) instead appends
// the new lines, fetched as HTML from the same page with ?fragment=lines,
// and scrolls along when it was at the bottom. "event: reset" reloads.
//
// A build page shows each step's logs in <details class="inline-log">
// (data-logid, data-href: the log's page, data-next: its last line shown,
// data-follow while it is written). An open one that follows its log adds
// logs/ID/* to the page's first stream (/sse/add/UUID/..., again after a
// reconnect) and appends the new lines, fetched from the log's page with
// ?fragment=inline, keeping the last inlineMax; closing it removes the
// path. A refresh of the steps keeps the open ones as they are.
(function () {
  "use strict";
  var body = document.body;
  var root = body.dataset.root || "./";
  var paths = (body.dataset.live || "").split(" ").filter(Boolean);
  var buildid = body.dataset.buildid ? Number(body.dataset.buildid) : 0;
  var log = document.getElementById("log");

  // A link to a line of a log that is on another page: go to that page.
  if (log) {
    var m = /^#L(\d+)$/.exec(location.hash);
    if (m && !document.getElementById("L" + m[1])) {
      var n = Number(m[1]);
      location.replace("?first=" + Math.max(1, n - 100) + "&count=" + log.dataset.count + location.hash);
      return;
    }
    if (log.hasAttribute("data-follow") && !location.hash) {
      window.scrollTo(0, document.documentElement.scrollHeight);
    }
  }
  if (!window.EventSource || !window.fetch || paths.length === 0) {
    return;
  }

  var timer = null;
  var last = 0;
  function refresh() {
    timer = null;
    last = Date.now();
    fetch(location.href, { headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live-region]").forEach(function (el) {
          var fresh = el.id && doc.getElementById(el.id);
          // A region the user is typing in (a stop reason, say) keeps
          // its input; the next refresh after they leave it updates it.
          var typing = el.contains(document.activeElement) &&
            /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
          if (fresh && !typing) {
            var next = document.importNode(fresh, true);
            // An open inline log stays as it is (open, with the lines
            // it has followed) in the region's new version.
            el.querySelectorAll("details.inline-log[open]").forEach(function (d) {
              var n = next.querySelector("#" + CSS.escape(d.id));
              if (n) {
                n.replaceWith(d);
              }
            });
            el.replaceWith(next);
          }
        });
        var title = doc.querySelector("title");
        if (title) {
          document.title = title.textContent;
        }
      })
      .catch(function () {});
  }
  function schedule() {
    if (timer === null) {
      timer = setTimeout(refresh, Math.max(500 - (Date.now() - last), 100));
    }
  }

  var busy = false;
  var again = false;
  function atBottom() {
    return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 8;
  }
  function appendLog() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    again = false;
    var count = Number(log.dataset.count) || 1000;
    var next = Number(log.dataset.next) + 1;
    fetch("?first=" + next + "&count=" + count + "&fragment=lines")
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var tpl = document.createElement("template");
        tpl.innerHTML = html;
        var got = tpl.content.querySelectorAll(".log-line").length;
        if (got > 0) {
          var follow = atBottom();
          log.appendChild(tpl.content);
          log.dataset.next = String(next + got - 1);
          var num = document.getElementById("log-num-lines");
          if (num && Number(num.textContent) < next + got - 1) {
            num.textContent = String(next + got - 1);
          }
          if (follow) {
            window.scrollTo(0, document.documentElement.scrollHeight);
          }
        }
        busy = false;
        if (got >= count || again) {
          appendLog();
        }
      })
      .catch(function () { busy = false; });
  }

  // Inline logs of a build page.
  var inlineMax = 1000;
  var uuid = null;
  var inlineFollowed = {}; // log id → its <details>, while open and followed
  function sseCmd(cmd, logid) {
    if (uuid) {
      fetch(root + "sse/" + cmd + "/" + uuid + "/logs/" + logid + "/*").catch(function () {});
    }
  }
  function appendInline(d) {
    if (d.gbbBusy) {
      d.gbbAgain = true;
      return;
    }
    d.gbbBusy = true;
    d.gbbAgain = false;
    var count = Number(d.dataset.count) || 50;
    var next = Number(d.dataset.next) + 1;
    fetch(d.dataset.href + "?first=" + next + "&count=" + count + "&fragment=inline")
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var box = d.querySelector(".inline-log-lines");
        var tpl = document.createElement("template");
        tpl.innerHTML = html;
        var got = tpl.content.querySelectorAll(".log-line").length;
        if (box && got > 0) {
          var follow = box.scrollTop + box.clientHeight >= box.scrollHeight - 8;
          box.appendChild(tpl.content);
          d.dataset.next = String(next + got - 1);
          var lines = box.querySelectorAll(".log-line");
          for (var i = 0; i < lines.length - inlineMax; i++) {
            lines[i].remove();
          }
          if (follow) {
            box.scrollTop = box.scrollHeight;
          }
        }
        d.gbbBusy = false;
        if (got >= count || d.gbbAgain) {
          appendInline(d);
        }
      })
      .catch(function () { d.gbbBusy = false; });
  }
  function watchInline(d) {
    var id = d.dataset.logid;
    if (d.open && d.hasAttribute("data-follow") && !inlineFollowed[id]) {
      inlineFollowed[id] = d;
      sseCmd("add", id);
      appendInline(d); // what came since the page was made
    } else if (!d.open && inlineFollowed[id]) {
      delete inlineFollowed[id];
      sseCmd("remove", id);
    }
  }
  document.addEventListener("toggle", function (e) {
    if (e.target.matches && e.target.matches("details.inline-log")) {
      watchInline(e.target);
    }
  }, true);

  var following = log && log.hasAttribute("data-follow");
  var logKey = log ? "logs/" + log.dataset.logid + "/" : "";
  function onEvent(e) {
    var ev;
    try {
      ev = JSON.parse(e.data);
    } catch (err) {
      return;
    }
    var key = ev.key || "";
    var m = /^logs\/(\d+)\//.exec(key);
    if (m && inlineFollowed[m[1]]) {
      appendInline(inlineFollowed[m[1]]);
      return;
    }
    if (log) {
      if (following && key.indexOf(logKey) === 0) {
        appendLog();
      }
      return;
    }
    if (buildid && key.indexOf("steps/") === 0 && ev.message && ev.message.buildid !== buildid) {
      return;
    }
    schedule();
  }

  var sources = [];
  paths.forEach(function (path, i) {
    var es = new EventSource(root + "sse/listen/" + path);
    sources.push(es);
    if (i === 0) {
      // The first stream also carries the followed inline logs; a
      // reconnected stream has a new uuid and only its listen path.
      es.addEventListener("handshake", function (e) {
        uuid = e.data;
        Object.keys(inlineFollowed).forEach(function (id) {
          sseCmd("add", id);
          appendInline(inlineFollowed[id]);
        });
      });
    }
    es.addEventListener("event", onEvent);
    es.addEventListener("reset", function () { location.reload(); });
    es.addEventListener("open", function () {
      // Catch up on what happened before we listened (between the page's
      // render and this first open) or while we were away.
      if (following) {
        appendLog();
      } else {
        schedule();
      }
    });
  });
  // A page left for another keeps no stream open (the browser's
  // back/forward cache would hold it, and HTTP/1.1 allows only six per
  // host); coming back to it reloads it.
  window.addEventListener("pagehide", function () {
    sources.forEach(function (es) { es.close(); });
  });
  window.addEventListener("pageshow", function (e) {
    if (e.persisted) {
      location.reload();
    }
  });
})();
