/* Registers the service worker of the installable app (served from the site root), and
   subscribes it to alerts by Web Push:
   - a button with data-push-toggle asks for permission, subscribes with the site's VAPID key
     (GET /push/key) and sends the subscription to POST /push/subscription (the logged-in
     customer's; CSRF token from the csrftoken cookie);
   - where permission was given before, the subscription is sent again once a session (a
     subscription the browser renewed reaches the site; 401 when nobody is logged in). */
"use strict";

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

function keyBytes(base64url) {
  const padded = (base64url + "===".slice((base64url.length + 3) % 4))
    .replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

async function sendSubscription(subscription, method) {
  const body = method === "DELETE" ? { endpoint: subscription.endpoint } : subscription.toJSON();
  const response = await fetch("/push/subscription", {
    method,
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: JSON.stringify(body),
  });
  return response.ok;
}

async function subscribe(registration) {
  let subscription = await registration.pushManager.getSubscription();
  if (!subscription) {
    const { public_key: key } = await (await fetch("/push/key")).json();
    subscription = await registration.pushManager.subscribe({
      userVisibleOnly: true,
      applicationServerKey: keyBytes(key),
    });
  }
  return sendSubscription(subscription, "POST");
}

function setUpPush(registration) {
  if (!("PushManager" in window) || !("Notification" in window)) return;
  if (Notification.permission === "granted" && !sessionStorage.getItem("simtopup-push")) {
    subscribe(registration)
      .then((ok) => ok && sessionStorage.setItem("simtopup-push", "sent"))
      .catch(() => undefined);
  }
  for (const button of document.querySelectorAll("[data-push-toggle]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const permission = await Notification.requestPermission();
      if (permission !== "granted") return;
      const ok = await subscribe(registration).catch(() => false);
      button.dataset.pushState = ok ? "on" : "failed";
    });
  }
}

if ("serviceWorker" in navigator && window.isSecureContext) {
  window.addEventListener("load", () => {
    navigator.serviceWorker.register("/sw.js", { scope: "/" })
      .then(() => navigator.serviceWorker.ready)
      .then(setUpPush)
      .catch(() => undefined);
  });
}
