// The upstream simulator for the server comparison: an OpenAI Realtime-shaped WebSocket server on loopback that
// answers every input_audio_buffer.append with a response.output_audio.delta carrying the same audio, so the
// caller's frames come back to the caller as agent audio through the system under test.
//   node echo_upstream.mjs PORT
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2]);
const server = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false, maxPayload: 1 << 22 });
let sessions = 0;

server.on('connection', (socket) => {
  sessions += 1;
  const id = sessions;
  socket.send(JSON.stringify({ type: 'session.created', event_id: `evt_${id}_0`, session: { id: `sess_${id}` } }));
  socket.on('message', (data) => {
    const event = JSON.parse(data);
    if (event.type === 'input_audio_buffer.append') {
      socket.send(JSON.stringify({
        type: 'response.output_audio.delta', event_id: 'evt', response_id: `resp_${id}`, item_id: `item_${id}`,
        output_index: 0, content_index: 0, delta: event.audio,
      }));
    }
  });
  socket.on('error', () => {});
});
server.on('listening', () => console.log(`echo upstream on ${port}`));
process.on('SIGTERM', () => process.exit(0));
