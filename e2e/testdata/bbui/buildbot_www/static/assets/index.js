// A stand-in for buildbot's UI: it does what the real one does that a
// Content-Security-Policy governs, and records in window.fixture what
// worked. The test reads it.
const done = {};
window.fixture = done;
const cfg = window.buildbotFrontendConfig || { title: "no config", plugins: {}, buildbotURL: new URL(".", location.href).href };
done.config = cfg.title;
done.theme = getComputedStyle(document.getElementById("root")).color;

// emotion and react-tooltip add <style> elements.
const style = document.createElement("style");
style.setAttribute("data-emotion", "css");
style.appendChild(document.createTextNode("#root { background-color: rgb(4, 5, 6); }"));
document.head.appendChild(style);
done.injectedStyle = getComputedStyle(document.getElementById("root")).backgroundColor;

// Images: bootstrap's data: URIs, the favicon drawn into a blob, avatars.
function image(name, src) {
  const img = new Image();
  img.onload = () => { done[name] = "loaded"; };
  img.onerror = () => { done[name] = "failed"; };
  img.src = src;
}
image("dataImage", "data:image/svg+xml,%3csvg xmlns='http://www.w3.org/2000/svg' width='8' height='8'/%3e");
image("blobImage", URL.createObjectURL(new Blob(["<svg xmlns='http://www.w3.org/2000/svg' width='8' height='8'/>"], { type: "image/svg+xml" })));
image("avatar", "avatar?email=jane%40example.org&size=32");

// The API relative to the UI's URL, and /ws as buildbot's UI opens it.
fetch("api/v2/builders").then((r) => r.json()).then((j) => { done.api = j.builders.length; }, (e) => { done.api = String(e); });
const ws = new WebSocket(cfg.buildbotURL.replace(/^http/, "ws") + "ws");
ws.onopen = () => {
  ws.send(JSON.stringify({ cmd: "startConsuming", path: "builds/*/*", _id: 1 }));
};
ws.onmessage = (m) => {
  const msg = JSON.parse(m.data);
  if (msg._id === 1) {
    done.ws = msg.code;
    ws.close();
  }
};
ws.onerror = () => { done.ws = "error"; };

// Plugins, as buildbot's UI loads them.
if (Object.keys(cfg.plugins).length === 0) {
  done.plugin = "no plugins";
}
for (const name in cfg.plugins) {
  const s = document.createElement("script");
  s.onerror = () => { done.plugin = "failed"; };
  s.src = `plugins/${name}/scripts.js`;
  document.head.appendChild(s);
  const l = document.createElement("link");
  l.rel = "stylesheet";
  l.href = `plugins/${name}/styles.css`;
  document.head.appendChild(l);
}
document.getElementById("root").textContent = "fixture UI of " + done.config;
