// Reseller portal, "Sell a top-up": the clerk's counter.
// - Recent devices and most-sold plans are links that work without script; here one click
//   fills the form instead of reloading it.
// - Keyboard: Enter in the device field goes on to the plan (or, with a plan chosen, to the
//   confirmation); Enter on the plan goes to the confirmation.
// - Scan: the camera reads the ICCID/IMEI barcode or QR code, with the browser's
//   BarcodeDetector where there is one, else the vendored ZXing decoder (loaded on demand
//   from our own static files). The server normalises whatever is read, like typed text.
"use strict";
(function () {
  var form = document.getElementById("sell-form");
  if (!form) {
    return;
  }
  var device = form.elements.device;
  var recent = form.elements.recent;
  var plan = form.elements.plan;

  function next() {
    if (plan.value) {
      if (form.requestSubmit) {
        form.requestSubmit();
      } else {
        form.submit();
      }
    } else {
      plan.focus();
    }
  }

  // Typing into the field forgets a recent device's token: the typed text is what counts.
  device.addEventListener("input", function () {
    recent.value = "";
  });
  device.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.isComposing) {
      event.preventDefault();
      if (device.value.trim()) {
        next();
      }
    }
  });
  plan.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && plan.value) {
      event.preventDefault();
      next();
    }
  });

  form.addEventListener("click", function (event) {
    var pick = event.target.closest("[data-recent]");
    if (pick) {
      event.preventDefault();
      device.value = pick.getAttribute("data-masked");
      recent.value = pick.getAttribute("data-recent");
      (plan.value ? form.querySelector("button[type=submit]") : plan).focus();
      return;
    }
    pick = event.target.closest("[data-plan]");
    if (pick) {
      event.preventDefault();
      plan.value = pick.getAttribute("data-plan");
      (device.value.trim() ? form.querySelector("button[type=submit]") : device).focus();
    }
  });

  // --- scanning ------------------------------------------------------------------------------
  var scan = document.getElementById("scan");
  var dialog = document.getElementById("scanner");
  if (!scan || !dialog || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return; // no camera API: the button stays hidden
  }
  var video = document.getElementById("scanner-video");
  var problem = document.getElementById("scanner-error");
  var stream = null;
  var timer = null;
  var FORMATS = ["qr_code", "code_128", "code_39", "data_matrix", "ean_13", "itf"];
  scan.hidden = false;

  function stop() {
    if (timer) {
      clearTimeout(timer);
      timer = null;
    }
    if (stream) {
      stream.getTracks().forEach(function (track) {
        track.stop();
      });
      stream = null;
    }
    video.srcObject = null;
  }

  function close() {
    stop();
    if (dialog.open) {
      dialog.close();
    }
  }

  function fail(which) {
    stop();
    problem.textContent = problem.getAttribute(which);
    problem.hidden = false;
  }

  function found(text) {
    close();
    device.value = text.trim();
    recent.value = "";
    device.focus();
    next();
  }

  function loadZxing() {
    return new Promise(function (resolve, reject) {
      if (window.ZXing) {
        resolve(window.ZXing);
        return;
      }
      var script = document.createElement("script");
      script.src = scan.getAttribute("data-decoder");
      script.onload = function () {
        if (window.ZXing) {
          resolve(window.ZXing);
        } else {
          reject(new Error("no decoder"));
        }
      };
      script.onerror = reject;
      document.head.appendChild(script);
    });
  }

  // A function (video) → Promise of the text read, or null when nothing was read this frame.
  function decoder() {
    if ("BarcodeDetector" in window) {
      var Detector = window.BarcodeDetector;
      var supported = Detector.getSupportedFormats
        ? Detector.getSupportedFormats()
        : Promise.resolve(FORMATS);
      return supported.then(function (formats) {
        var wanted = FORMATS.filter(function (f) {
          return formats.indexOf(f) >= 0;
        });
        var detector = new Detector(wanted.length ? { formats: wanted } : undefined);
        return function (source) {
          return detector.detect(source).then(function (codes) {
            return codes.length ? codes[0].rawValue : null;
          });
        };
      });
    }
    return loadZxing().then(function (ZXing) {
      var hints = new Map();
      hints.set(ZXing.DecodeHintType.POSSIBLE_FORMATS, [
        ZXing.BarcodeFormat.QR_CODE,
        ZXing.BarcodeFormat.CODE_128,
        ZXing.BarcodeFormat.CODE_39,
        ZXing.BarcodeFormat.DATA_MATRIX,
        ZXing.BarcodeFormat.EAN_13,
        ZXing.BarcodeFormat.ITF,
      ]);
      hints.set(ZXing.DecodeHintType.TRY_HARDER, true);
      var reader = new ZXing.MultiFormatReader();
      reader.setHints(hints);
      var canvas = document.createElement("canvas");
      return function (source) {
        if (!source.videoWidth) {
          return Promise.resolve(null);
        }
        canvas.width = source.videoWidth;
        canvas.height = source.videoHeight;
        canvas.getContext("2d").drawImage(source, 0, 0);
        try {
          var luminance = new ZXing.HTMLCanvasElementLuminanceSource(canvas);
          var bitmap = new ZXing.BinaryBitmap(new ZXing.HybridBinarizer(luminance));
          return Promise.resolve(reader.decode(bitmap).getText());
        } catch (e) {
          return Promise.resolve(null); // nothing readable in this frame
        }
      };
    });
  }

  scan.addEventListener("click", function () {
    problem.hidden = true;
    dialog.showModal();
    Promise.all([
      navigator.mediaDevices.getUserMedia({
        video: { facingMode: "environment" },
        audio: false,
      }),
      decoder().catch(function () {
        return null;
      }),
    ]).then(
      function (results) {
        stream = results[0];
        var read = results[1];
        if (!read) {
          fail("data-no-decoder");
          return;
        }
        video.srcObject = stream;
        video.play().catch(function () {});
        function tick() {
          timer = null;
          if (!stream) {
            return;
          }
          read(video)
            .then(function (text) {
              if (text && text.trim()) {
                found(text);
              } else if (stream) {
                timer = setTimeout(tick, 150);
              }
            })
            .catch(function () {
              if (stream) {
                timer = setTimeout(tick, 300);
              }
            });
        }
        tick();
      },
      function () {
        fail("data-no-camera");
      }
    );
  });
  document.getElementById("scanner-close").addEventListener("click", close);
  dialog.addEventListener("close", stop);
})();
