/* AudioWorklet for the browser test call: the microphone at the context's rate (44.1/48 kHz …) → 8 kHz
   mono, posted to the page in 160-sample (20 ms) Float32 frames. Each output sample is the mean of the
   input samples in its 1/8000 s window (a box low-pass before decimation: no aliasing of the 4–24 kHz
   band into the phone band), with fractional windows carried across render quanta. */
class MicTo8k extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / 8000;   // input samples per output sample, e.g. 6 at 48 kHz
    this.acc = 0;                    // weighted sum of the current window
    this.filled = 0;                 // input samples (fractional) in the current window
    this.frame = new Float32Array(160);
    this.n = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      let sample = channel[i];
      let room = this.step - this.filled;
      if (room > 1) {
        this.acc += sample;
        this.filled += 1;
        continue;
      }
      // This input sample finishes the window: a fraction of it goes here, the rest starts the next one.
      this.acc += sample * room;
      this.frame[this.n++] = this.acc / this.step;
      if (this.n === 160) {
        this.port.postMessage(this.frame);
        this.frame = new Float32Array(160);
        this.n = 0;
      }
      const rest = 1 - room;
      this.acc = sample * rest;
      this.filled = rest;
    }
    return true;
  }
}

registerProcessor("mic-to-8k", MicTo8k);
