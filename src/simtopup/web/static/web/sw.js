/* simtopup service worker. Served by /sw.js (scope /), which puts self.SIMTOPUP in front:
   {version, shell: [static URLs], offline: "/offline"}.

   - install: cache the shell (stylesheet, scripts, icons) and the offline page;
   - pages (navigations): always from the network; when the network fails, the offline page.
     Pages are never cached: they may show a customer's data;
   - shell files: from the cache, else the network;
   - anything else (API calls, other static files, POSTs): not touched at all. */
"use strict";

const CONFIG = self.SIMTOPUP;
const CACHE = "simtopup-shell-" + CONFIG.version;
const SHELL = new Set(CONFIG.shell);

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(CACHE)
      .then((cache) => cache.addAll([...CONFIG.shell, CONFIG.offline]))
      .then(() => self.skipWaiting())
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(
        names.filter((name) => name.startsWith("simtopup-") && name !== CACHE)
          .map((name) => caches.delete(name))
      ))
      .then(() => self.clients.claim())
  );
});

// The offline page is rendered in the visitor's language; when they switch language, fetch
// it again so that it stays in the language of the pages they see.
async function refreshOffline(pageLanguage) {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(CONFIG.offline);
  if (cached && cached.headers.get("Content-Language") === pageLanguage) return;
  const fresh = await fetch(CONFIG.offline, { credentials: "same-origin" });
  if (fresh.ok) await cache.put(CONFIG.offline, fresh);
}

async function page(event) {
  try {
    const response = await fetch(event.request);
    const language = response.headers.get("Content-Language");
    if (response.ok && language) {
      event.waitUntil(refreshOffline(language).catch(() => undefined));
    }
    return response;
  } catch (error) {
    const cache = await caches.open(CACHE);
    const offline = await cache.match(CONFIG.offline);
    if (offline) return offline;
    throw error;
  }
}

async function shellFile(request) {
  const cache = await caches.open(CACHE);
  return (await cache.match(request)) || fetch(request);
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    event.respondWith(page(event));
  } else if (SHELL.has(url.pathname)) {
    event.respondWith(shellFile(request));
  }
});

/* Alerts by Web Push (usage/alerts.py): the payload is JSON {title, body, url, tag}; a tap
   opens the one-tap top-up link (same origin only) in an open window, else a new one. */
self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (error) {
    data = { body: event.data ? event.data.text() : "" };
  }
  event.waitUntil(
    self.registration.showNotification(data.title || "simtopup", {
      body: data.body || "",
      tag: data.tag || undefined,
      icon: CONFIG.shell.find((path) => path.endsWith("icon-192.png")),
      data: { url: data.url || "/" },
    })
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  let target = new URL("/", self.location.origin);
  try {
    const wanted = new URL(event.notification.data.url, self.location.origin);
    if (wanted.origin === self.location.origin) target = wanted;
  } catch (error) {
    /* keep the home page */
  }
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      const open = windows.find((client) => "focus" in client);
      if (open) return open.navigate(target.href).then((client) => (client || open).focus());
      return self.clients.openWindow(target.href);
    })
  );
});

/* A subscription the push service replaced: send the new one to the site. */
self.addEventListener("pushsubscriptionchange", (event) => {
  const options = event.oldSubscription ? event.oldSubscription.options : null;
  if (!options) return;
  event.waitUntil(
    self.registration.pushManager.subscribe(options).then((subscription) =>
      fetch("/push/subscription", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(subscription.toJSON()),
      })
    )
  );
});
