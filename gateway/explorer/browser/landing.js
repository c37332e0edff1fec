// The development landing page: Apollo Sandbox when its CDN answers, the gateway's own explorer
// when it does not. A refused connection fails fast (onerror); a firewall that drops packets
// never answers, and the browser's own connect timeout is minutes long, so our timer decides.
(function () {
  'use strict';
  var body = document.body;
  var status = document.getElementById('status');
  var local = body.dataset.localExplorer;
  var timeoutMs = Number(body.dataset.sandboxTimeoutMs) || 3000;
  var settled = false;
  var script;

  function fallBack(reason) {
    if (settled) return;
    settled = true;
    if (script) script.remove();
    status.textContent = 'Apollo Sandbox is out of reach (' + reason + '): opening the local explorer…';
    // replace(): the back button should not land on a page that will only time out again.
    location.replace(local + (location.search || ''));
  }

  if (navigator.onLine === false) return fallBack('offline');

  var timer = setTimeout(function () {
    fallBack('no answer in ' + timeoutMs + ' ms');
  }, timeoutMs);

  script = document.createElement('script');
  script.src = body.dataset.sandboxScript;
  script.onerror = function () {
    clearTimeout(timer);
    fallBack('unreachable');
  };
  script.onload = function () {
    clearTimeout(timer);
    if (settled) return;
    if (typeof window.EmbeddedSandbox !== 'function') return fallBack('unexpected script');
    settled = true;
    status.textContent = 'Apollo Sandbox';
    var config = JSON.parse(body.dataset.sandboxConfig);
    config.initialEndpoint = location.origin + location.pathname;
    new window.EmbeddedSandbox(config);
  };
  document.head.appendChild(script);
})();
