// WeChat Pay inside WeChat's browser (JSAPI): the button opens WeChat's payment sheet with
// the signed parameters the server put in #wechat-jsapi; status.js then sees the order paid.
(function () {
  "use strict";
  var data = document.getElementById("wechat-jsapi");
  var button = document.querySelector("[data-wechat-pay]");
  if (!data || !button) return;
  var parameters = JSON.parse(data.textContent);

  function pay() {
    if (typeof WeixinJSBridge === "undefined") return;
    button.disabled = true;
    WeixinJSBridge.invoke("getBrandWCPayRequest", parameters, function () {
      // Paid, cancelled or failed: the server learns it from WeChat Pay, not from here.
      button.disabled = false;
    });
  }

  button.addEventListener("click", function () {
    if (typeof WeixinJSBridge === "undefined") {
      document.addEventListener("WeixinJSBridgeReady", pay, { once: true });
    } else {
      pay();
    }
  });
})();
