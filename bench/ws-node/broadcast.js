// The broadcast example from the README of the npm `ws` package, on a port given as the
// first argument (0: a free one), 127.0.0.1 only. bench/chat.sh runs it beside sockit.
//
//   npm install --prefix bench/ws-node && node bench/ws-node/broadcast.js 8080
import WebSocket, { WebSocketServer } from 'ws';

const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(process.argv[2] ?? 8080) });

wss.on('listening', () => {
  console.error(`node ws broadcast listening on 127.0.0.1:${wss.address().port}`);
});

wss.on('connection', function connection(ws) {
  ws.on('error', console.error);

  ws.on('message', function message(data, isBinary) {
    wss.clients.forEach(function each(client) {
      if (client !== ws && client.readyState === WebSocket.OPEN) {
        client.send(data, { binary: isBinary });
      }
    });
  });
});
