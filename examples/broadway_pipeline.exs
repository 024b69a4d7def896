# A Broadway pipeline fed by WsPort.Producer: the same shape as
# off_broadway_websocket's README example, with ws_port's producer.
#
# In a project that depends on :broadway and :ws_port (ws_port must be
# compiled after Broadway, which Mix does when :broadway is a dependency):
#
#   mix run examples/broadway_pipeline.exs URL [PATH] [COUNT]
#
# e.g. against ws_port's test server (prints "PORT <n>"):
#
#   /usr/bin/python3 test/peers/ws_server.py &
#   mix run examples/broadway_pipeline.exs ws://127.0.0.1:<n> "/send?n=1000&size=64&type=text" 1000
#
# The pipeline counts COUNT messages (default 1000), prints the telemetry
# events it saw, then stops (Broadway drains: the producer closes the
# connection with code 1000).

unless Code.ensure_loaded?(Broadway) and Code.ensure_loaded?(WsPort.Producer) do
  IO.puts(:stderr, """
  This example needs Broadway, and ws_port compiled while Broadway was present
  (WsPort.Producer is only compiled then). Add {:broadway, "~> 1.0"} to your
  project's deps.
  """)

  System.halt(1)
end

defmodule MyApp.Backoff do
  @moduledoc "A ws_retry_fun: exponential backoff with jitter, giving up when retries_left is 0."

  def exponential_backoff_with_jitter(%{retries_left: 0}), do: :stop

  def exponential_backoff_with_jitter(%{retries_left: left, delay: delay} = state) do
    factor = Map.get(state, :backoff_factor, 2)
    max = Map.get(state, :max_delay, 30_000)
    jitter = Map.get(state, :jitter_fraction, 0.1)
    next = min(round(delay * factor), max)
    spread = round(next * jitter)
    next = max(0, next + Enum.random(-spread..spread//1))
    %{state | retries_left: left - 1, delay: next}
  end
end

defmodule MyApp.Telemetry do
  @moduledoc "Forwards the producer's telemetry events to a process (attach with it as config)."
  def handle_event(event, measurements, meta, pid),
    do: send(pid, {:telemetry, event, measurements, meta})
end

defmodule MyApp.Pipeline do
  use Broadway

  require Logger

  alias Broadway.Message

  def start_link(opts) do
    Broadway.start_link(__MODULE__,
      name: __MODULE__,
      producer: [
        module: {
          WsPort.Producer,
          # Your WebSocket endpoint:
          # Idle timeout (ms) for no ping/data before reconnect:
          # Ping the server after 5 s of silence (keeps the idle timer quiet):
          # How long to wait (ms) for DNS + TCP + TLS + upgrade:
          # Retry state handed to ws_retry_fun:
          # wss only: tls: [cacertfile: "/path/ca.pem"],
          # Prefix for telemetry events:
          # Sent after every (re)connect:
          # Messages kept ready beyond the pipeline's demand:
          url: Keyword.fetch!(opts, :url),
          path: Keyword.get(opts, :path, ""),
          ws_timeout: 15_000,
          ping_interval: 5_000,
          await_timeout: 8_000,
          ws_retry_opts: %{
            max_retries: 5,
            retries_left: 5,
            delay: 1_000,
            max_delay: 30_000,
            backoff_factor: 2,
            jitter_fraction: 0.1
          },
          ws_retry_fun: &MyApp.Backoff.exponential_backoff_with_jitter/1,
          telemetry_id: :my_feed,
          headers: [{"x-api-key", "api-key"}],
          on_connect: [{:text, ~s({"subscribe": "updates"})}],
          max_buffer: 10
        },
        transformer: {__MODULE__, :transform, []},
        # one producer = one connection
        concurrency: 1
      ],
      processors: [
        default: [min_demand: 5, max_demand: 20, concurrency: 4]
      ],
      context: %{report_to: Keyword.fetch!(opts, :report_to)}
    )
  end

  @impl true
  def handle_message(_processor, %Message{data: raw, metadata: meta} = msg, ctx) do
    # Decode here with the JSON library of your choice, e.g.
    #   case Jason.decode(raw) do
    #     {:ok, data} -> Message.update_data(msg, fn _ -> data end)
    #     {:error, err} -> Message.failed(msg, err)
    #   end
    send(ctx.report_to, {:handled, meta.opcode, byte_size(raw)})
    msg
  end

  # The producer already emits %Broadway.Message{}; a transformer receives
  # it and returns a message (here: note when it went through).
  def transform(%Message{} = msg, _opts) do
    %{msg | metadata: Map.put(msg.metadata, :transformed_at, System.monotonic_time())}
  end
end

{url, rest} =
  case System.argv() do
    [url | rest] when url not in ["-h", "--help"] ->
      {url, rest}

    _ ->
      IO.puts("usage: mix run examples/broadway_pipeline.exs URL [PATH] [COUNT]")
      System.halt(1)
  end

path = Enum.at(rest, 0, "")
count = String.to_integer(Enum.at(rest, 1, "1000"))

{:ok, _} = Application.ensure_all_started(:ws_port)

if Code.ensure_loaded?(:telemetry) do
  {:ok, _} = Application.ensure_all_started(:telemetry)

  events =
    for e <- [:success, :failure, :disconnected, :timeout, :status, :closed],
        do: [:my_feed, :connection, e]

  :telemetry.attach_many(
    "broadway-pipeline-example",
    events,
    &MyApp.Telemetry.handle_event/4,
    self()
  )
end

{:ok, _} = Application.ensure_all_started(:broadway)
{:ok, _pipeline} = MyApp.Pipeline.start_link(url: url, path: path, report_to: self())

started = System.monotonic_time(:millisecond)

got =
  Enum.reduce(1..count, %{bytes: 0}, fn _, acc ->
    receive do
      {:handled, _opcode, size} -> %{acc | bytes: acc.bytes + size}
    after
      30_000 -> raise "no message within 30 s"
    end
  end)

ms = System.monotonic_time(:millisecond) - started
IO.puts("handled #{count} messages (#{got.bytes} bytes) in #{ms} ms")

:ok = Broadway.stop(MyApp.Pipeline)

receive_all = fn f, acc ->
  receive do
    {:telemetry, event, measurements, meta} -> f.(f, [{event, measurements, meta.url} | acc])
  after
    200 -> Enum.reverse(acc)
  end
end

for {event, measurements, url} <- receive_all.(receive_all, []) do
  IO.puts("telemetry #{inspect(event)} #{inspect(measurements)} #{url}")
end

IO.puts("pipeline stopped")
