// The local explorer: GraphiQL (from @graphql-yoga/graphiql's prebuilt bundle, served by the
// gateway) against this gateway. Queries and mutations over HTTP with the session cookie
// (credentials: include), subscriptions over graphql-ws on the same path (the browser sends the
// cookie with the WebSocket upgrade). Headers are edited in GraphiQL's Headers tab.
(function () {
  'use strict';
  var root = document.getElementById('graphiql');
  var bundle = root.dataset.bundle;
  var endpoint = new URL(root.dataset.endpoint, location.href);
  var socket = new URL(endpoint);
  socket.protocol = endpoint.protocol === 'https:' ? 'wss:' : 'ws:';

  // Monaco's workers come from the same bundle, as module workers of this origin.
  var workers = { json: 'json.worker.bundle.js', graphql: 'graphql.worker..bundle.js' };
  window.MonacoEnvironment = {
    getWorkerUrl: function (_moduleId, label) {
      return bundle + '/monacoeditorwork/' + (workers[label] || 'editor.worker.bundle.js');
    },
  };

  root.textContent = '';
  window.YogaGraphiQL.renderYogaGraphiQL(root, {
    endpoint: endpoint.href,
    subscriptionsProtocol: 'WS',
    subscriptionsEndpoint: socket.href,
    credentials: 'include',
    title: 'Commerce explorer',
  });
})();
