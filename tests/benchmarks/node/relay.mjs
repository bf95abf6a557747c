// The bare relay baseline: Twilio Media Streams in, OpenAI Realtime out, nothing but parse and forward
// (one JSON.parse per message, one JSON.stringify per message sent, a mark after each agent frame).
//   node relay.mjs PORT UPSTREAM_WS_URL
import { WebSocket, WebSocketServer } from 'ws';

const [port, upstreamUrl] = [Number(process.argv[2]), process.argv[3]];
const server = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });

server.on('connection', (twilio) => {
  let streamSid = '';
  let marks = 0;
  const early = [];
  const upstream = new WebSocket(upstreamUrl, { perMessageDeflate: false, headers: { Authorization: 'Bearer x' } });
  upstream.on('open', () => {
    upstream.send(JSON.stringify({ type: 'session.update', session: { type: 'realtime' } }));
    for (const text of early) upstream.send(text);
    early.length = 0;
  });
  upstream.on('message', (data) => {
    const event = JSON.parse(data);
    if (event.type === 'response.output_audio.delta') {
      twilio.send(JSON.stringify({ event: 'media', streamSid, media: { payload: event.delta } }));
      marks += 1;
      twilio.send(JSON.stringify({ event: 'mark', streamSid, mark: { name: String(marks) } }));
    }
  });
  twilio.on('message', (data) => {
    const message = JSON.parse(data);
    if (message.event === 'media') {
      const text = JSON.stringify({ type: 'input_audio_buffer.append', audio: message.media.payload });
      if (upstream.readyState === WebSocket.OPEN) upstream.send(text);
      else early.push(text);
    } else if (message.event === 'start') {
      streamSid = message.start.streamSid;
    } else if (message.event === 'stop') {
      twilio.close(1000);
    }
  });
  twilio.on('close', () => upstream.close());
  upstream.on('close', () => twilio.close(1000));
  for (const socket of [twilio, upstream]) socket.on('error', () => socket.terminate());
});
server.on('listening', () => console.log(`relay on ${port}`));
process.on('SIGTERM', () => process.exit(0));
