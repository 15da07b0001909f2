"""A real Pipecat bot for the pipecatwsrc/pipecatwssink tests.

It runs pipecat-ai's own WebSocket server transport and serializers, with no
external services. What it says is chosen with --mode:

  ramp     sends --seconds of a 16-bit ramp (sample k = k % 20000) at --rate,
           then, with --hangup, ends the call (EndFrame: the server closes the
           socket cleanly); --message sends a transport message first
  echo     sends back every audio frame it hears
  silent   says nothing; with --hangup, ends the call after --seconds

--log-input prints what the client sends besides audio: MESSAGE <json>,
TEXT <text>, DTMF <key>.

It prints "READY <port>" once it listens, and "CLIENT CONNECTED" when the
element connects.
"""

import argparse
import json
import asyncio
import sys

from pipecat.frames.frames import (
    EndFrame,
    InputDTMFFrame,
    InputTransportMessageFrame,
    TextFrame,
    InputAudioRawFrame,
    OutputAudioRawFrame,
    OutputTransportMessageUrgentFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.serializers.exotel import ExotelFrameSerializer
from pipecat.serializers.genesys import GenesysAudioHookSerializer
from pipecat.serializers.vonage import VonageFrameSerializer
from pipecat.serializers.plivo import PlivoFrameSerializer
from pipecat.serializers.telnyx import TelnyxFrameSerializer
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.server import (
    SingleClientWebsocketServerParams,
    SingleClientWebsocketServerTransport,
)

CHUNK_MS = 20


def ramp(rate: int, seconds: float) -> list[bytes]:
    """The bot's speech: 20 ms chunks of a ramp the tests can check sample by sample."""
    per_chunk = rate * CHUNK_MS // 1000
    total = int(rate * seconds)
    chunks = []
    for start in range(0, total, per_chunk):
        samples = range(start, min(start + per_chunk, total))
        chunks.append(b"".join((k % 20000).to_bytes(2, "little", signed=True) for k in samples))
    return chunks


class LogInput(FrameProcessor):
    """Prints what the client sent besides audio, for the tests to read."""

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputTransportMessageFrame):
            print(f"MESSAGE {json.dumps(frame.message, sort_keys=True)}", flush=True)
        elif isinstance(frame, TextFrame):
            print(f"TEXT {frame.text}", flush=True)
        elif isinstance(frame, InputDTMFFrame):
            print(f"DTMF {frame.button.value}", flush=True)
        await self.push_frame(frame, direction)


class Echo(FrameProcessor):
    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self.push_frame(
                OutputAudioRawFrame(frame.audio, frame.sample_rate, frame.num_channels)
            )
        else:
            await self.push_frame(frame, direction)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument(
        "--serializer",
        choices=["protobuf", "twilio", "telnyx", "telnyx-pcma", "plivo", "exotel", "vonage", "genesys"],
        default="protobuf",
    )
    p.add_argument("--mode", choices=["ramp", "echo", "silent"], default="ramp")
    p.add_argument("--rate", type=int, default=16000)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--hangup", action="store_true")
    p.add_argument("--log-input", action="store_true", help="print messages and text the client sends")
    p.add_argument(
        "--end-silence",
        type=int,
        default=2,
        help="silence Pipecat sends after the bot's speech (audio_out_end_silence_secs)",
    )
    p.add_argument("--message", default=None, help="JSON sent as a transport message first")
    args = p.parse_args()

    # Telephony wires are 8 kHz; auto_hang_up would call the provider's REST API.
    rate = 8000
    if args.serializer == "twilio":
        serializer = TwilioFrameSerializer(
            stream_sid="MZ-test", params=TwilioFrameSerializer.InputParams(auto_hang_up=False)
        )
    elif args.serializer in ("telnyx", "telnyx-pcma"):
        encoding = "PCMA" if args.serializer == "telnyx-pcma" else "PCMU"
        serializer = TelnyxFrameSerializer(
            stream_id="telnyx-test",
            outbound_encoding=encoding,
            inbound_encoding=encoding,
            params=TelnyxFrameSerializer.InputParams(auto_hang_up=False),
        )
    elif args.serializer == "plivo":
        serializer = PlivoFrameSerializer(
            stream_id="plivo-test", params=PlivoFrameSerializer.InputParams(auto_hang_up=False)
        )
    elif args.serializer == "exotel":
        serializer = ExotelFrameSerializer(stream_sid="exotel-test")
    elif args.serializer == "vonage":
        rate = 16000
        serializer = VonageFrameSerializer(VonageFrameSerializer.InputParams(vonage_sample_rate=rate))
    elif args.serializer == "genesys":
        serializer = GenesysAudioHookSerializer()
    else:
        serializer = ProtobufFrameSerializer()
        rate = args.rate

    transport = SingleClientWebsocketServerTransport(
        host="127.0.0.1",
        port=args.port,
        params=SingleClientWebsocketServerParams(
            serializer=serializer,
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_in_sample_rate=rate,
            audio_out_sample_rate=rate,
            audio_out_10ms_chunks=2,
            audio_out_end_silence_secs=args.end_silence,
        ),
    )

    processors = [transport.input()]
    if args.log_input:
        processors.append(LogInput())
    if args.mode == "echo":
        processors.append(Echo())
    processors.append(transport.output())
    task = PipelineTask(
        Pipeline(processors),
        params=PipelineParams(audio_in_sample_rate=rate, audio_out_sample_rate=rate),
    )

    @transport.event_handler("on_websocket_ready")
    async def on_ready(_transport):
        print(f"READY {args.port}", flush=True)

    @transport.event_handler("on_client_connected")
    async def on_connected(_transport, _ws):
        print("CLIENT CONNECTED", flush=True)
        if args.mode == "silent" and args.hangup:

            async def hang_up_later():
                await asyncio.sleep(args.seconds)
                await task.queue_frames([EndFrame()])

            asyncio.get_running_loop().create_task(hang_up_later())
        if args.mode != "ramp":
            return
        frames = []
        if args.message:
            frames.append(OutputTransportMessageUrgentFrame(message=json.loads(args.message)))
        frames += [OutputAudioRawFrame(chunk, rate, 1) for chunk in ramp(rate, args.seconds)]
        if args.hangup:
            frames.append(EndFrame())
        await task.queue_frames(frames)

    @transport.event_handler("on_client_disconnected")
    async def on_disconnected(_transport, _ws):
        print("CLIENT DISCONNECTED", flush=True)
        await task.cancel()

    await PipelineRunner(handle_sigint=True).run(task)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
