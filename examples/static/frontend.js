// The demo's front-end flag, read with the JS SDK's <script> bundle (window.FeatureFlag).
"use strict";
(async () => {
  const target = document.querySelector("[data-testid=frontend-flag]");
  const client = window.FeatureFlag.createClient();
  const render = () => {
    const on = client.getBool("frontend.chat-widget", false);
    target.textContent = on ? "on — the chat widget would open here" : "off";
    target.dataset.status = client.status;
    target.dataset.value = String(on);
  };
  client.subscribe(render);
  await client.refresh();
  render();
})();
