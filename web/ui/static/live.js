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
            el.replaceWith(document.importNode(fresh, true));
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
  paths.forEach(function (path) {
    var es = new EventSource(root + "sse/listen/" + path);
    sources.push(es);
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
