// Order status page: ask the server every 1.5 s how the order stands and reload the page
// when it changes, until it is final (credited, failed, refunded or cancelled).
(function () {
  "use strict";
  var box = document.getElementById("order-status");
  if (!box || box.hasAttribute("data-final")) return;
  var url = box.getAttribute("data-poll");
  var shown = box.getAttribute("data-status");
  var delay = 1500;
  var started = Date.now();
  var LIMIT = 45 * 60 * 1000; // a payment left open lapses at the provider long before this

  function poll() {
    if (Date.now() - started > LIMIT) return;
    fetch(url, { headers: { Accept: "application/json" }, cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("status " + response.status);
        return response.json();
      })
      .then(function (data) {
        if (data.status !== shown) {
          window.location.reload();
          return;
        }
        delay = 1500;
        window.setTimeout(poll, delay);
      })
      .catch(function () {
        // Offline or a hiccup: back off a little, keep trying.
        delay = Math.min(delay * 2, 15000);
        window.setTimeout(poll, delay);
      });
  }
  window.setTimeout(poll, delay);
})();
