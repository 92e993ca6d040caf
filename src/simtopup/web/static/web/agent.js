// Reseller portal: print button, confirmations, and no double click on "Confirm and top up"
// (the form's reference makes a second submit harmless anyway).
"use strict";
document.addEventListener("click", function (event) {
  var target = event.target.closest("[data-print]");
  if (target) {
    window.print();
    return;
  }
  var ask = event.target.closest("[data-confirm]");
  if (ask && !window.confirm(ask.getAttribute("data-confirm"))) {
    event.preventDefault();
  }
});
document.addEventListener("submit", function (event) {
  var button = event.target.querySelector("[data-once]");
  if (button) {
    if (button.dataset.sent) {
      event.preventDefault();
      return;
    }
    button.dataset.sent = "1";
    button.setAttribute("aria-disabled", "true");
  }
});
