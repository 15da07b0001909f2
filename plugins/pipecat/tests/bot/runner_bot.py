"""A Pipecat bot served by Pipecat's own development runner (pipecat.runner.run).

This is how a Pipecat telephony bot is deployed: the runner accepts the
provider's media stream on /ws, reads its first messages to tell which
provider it is and the call's ids (pipecat/runner/utils.py), and builds that
provider's serializer. The element must pass for the provider here.

The bot echoes every audio frame it hears and prints, for the tests:
  DETECTED <provider> <stream id> <call id>   what the runner made of the handshake
  DTMF <key>                                  each InputDTMFFrame, in order

Run: python runner_bot.py --port N   (prints "READY N" once it listens)
"""

import asyncio
import os
import sys

from pipecat.frames.frames import InputAudioRawFrame, InputDTMFFrame, OutputAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.runner.utils import create_transport, parse_telephony_websocket
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams

RATE = 8000

# The runner's serializers hang up through each provider's REST API and
# refuse to start without credentials; nothing here reaches those APIs.
for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TELNYX_API_KEY", "PLIVO_AUTH_ID", "PLIVO_AUTH_TOKEN"):
    os.environ.setdefault(name, "test-only")


class EchoAndLog(FrameProcessor):
    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self.push_frame(OutputAudioRawFrame(frame.audio, frame.sample_rate, frame.num_channels))
        elif isinstance(frame, InputDTMFFrame):
            print(f"DTMF {frame.button.value}", flush=True)
        else:
            await self.push_frame(frame, direction)


def params():
    return FastAPIWebsocketParams(
        audio_in_enabled=True,
        audio_out_enabled=True,
        audio_in_sample_rate=RATE,
        audio_out_sample_rate=RATE,
        audio_out_10ms_chunks=2,
    )


async def bot(runner_args):
    transport_type, call_data = await parse_telephony_websocket(runner_args.websocket)
    print(f"DETECTED {transport_type} {call_data['stream_id']} {call_data['call_id']}", flush=True)
    transport = await create_transport(
        runner_args, {name: params for name in ("twilio", "telnyx", "plivo", "exotel")}
    )
    task = PipelineTask(
        Pipeline([transport.input(), EchoAndLog(), transport.output()]),
        params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
    )

    @transport.event_handler("on_client_disconnected")
    async def on_disconnected(_transport, _client):
        await task.cancel()

    await PipelineRunner(handle_sigint=False).run(task)


if __name__ == "__main__":
    from pipecat.runner.run import main

    port = sys.argv[sys.argv.index("--port") + 1]

    async def announce():
        # The runner prints its own banner before uvicorn listens; say READY
        # only once the port takes connections.
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", int(port))
                writer.close()
                print(f"READY {port}", flush=True)
                return
            except OSError:
                await asyncio.sleep(0.05)

    import threading

    threading.Thread(target=lambda: asyncio.run(announce()), daemon=True).start()
    sys.argv = [sys.argv[0], "--host", "127.0.0.1", "--port", port, "-t", "twilio"]
    main()
