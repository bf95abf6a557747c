"""Run a FastAPI Twilio ⇄ OpenAI Realtime sample app (its `main:app`, from its own directory and virtualenv,
unchanged) for `server_compare`, with its OpenAI WebSocket URL pointed at the benchmark's upstream simulator.

    SAMPLE_PYTHON fastapi_sample_launch.py SAMPLE_DIR PORT UPSTREAM_WS_URL

The sample hard-codes the OpenAI host; this wraps `websockets.connect` to swap that URL's scheme, host and path
for the simulator's (keeping the query) and serves the app with uvicorn's defaults, as the sample's own
`__main__` does. Nothing of the sample is copied or changed.
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn
import websockets


def main() -> None:
    sample_dir, port, upstream = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    real_connect = websockets.connect

    def connect(uri: str, *args: Any, **kwargs: Any) -> Any:
        query = uri.partition("?")[2]
        return real_connect(f"{upstream}?{query}" if query else upstream, *args, **kwargs)

    websockets.connect = connect  # type: ignore[assignment]
    sys.path.insert(0, sample_dir)
    uvicorn.run("main:app", host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()
