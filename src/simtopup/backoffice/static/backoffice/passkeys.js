// "Your sign-in methods": a new passkey shows in the list (django-otp-webauthn's script
// fires otp_webauthn.register_complete when the server has saved it).
document.addEventListener("otp_webauthn.register_complete", () => {
  window.location.reload();
});
