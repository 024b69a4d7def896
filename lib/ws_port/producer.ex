# Compiled only when Broadway is available (an optional dependency, see the
# README's Install and Broadway sections); the logic lives in
# WsPort.ProducerCore, tested without Broadway.
if Code.ensure_loaded?(Broadway) do
  defmodule WsPort.Producer do
    @moduledoc """
    A Broadway producer that streams one WebSocket connection (run by the
    ws_port port program) into a pipeline, with real backpressure: Broadway's
    demand becomes the port program's credit, and when the credit is used up
    the port stops reading the socket, so a slow pipeline slows the server
    down through TCP instead of growing memory.

        Broadway.start_link(MyPipeline,
          name: MyPipeline,
          producer: [
            module:
              {WsPort.Producer,
               url: "wss://example.com",
               path: "/stream/updates",
               on_connect: [{:text, ~s({"subscribe": "trades"})}],
               telemetry_id: :my_feed},
            concurrency: 1
          ],
          processors: [default: [concurrency: 8, max_demand: 100]]
        )

    Keep the producer's `concurrency` at 1: each producer opens its own
    connection, so two producers receive the stream twice.

    ## Options

    Validated when the pipeline starts (`prepare_for_start/2`); a bad option
    raises `ArgumentError` naming it and what is accepted. Names in
    parentheses are off_broadway_websocket's, accepted as aliases.

      * `:url` - required. A `ws://` or `wss://` URL (a string or a `%URI{}`).
      * `:path` - appended to `:url` (`"wss://h"` + `"/a?b=1"`), for
        off_broadway_websocket's `url` + `path` split. Default none.
      * `:headers` - `[{name, value}]` sent with the upgrade request.
        Default `[]`.
      * `:protocols` - the `Sec-WebSocket-Protocol` offer, a list of strings.
        Default `[]`.
      * `:tls` - for `wss`: keyword list or map of `:verify` (`:verify_peer`,
        the default, or `:verify_none`), `:cacertfile`, `:cacerts`,
        `:certfile`, `:keyfile`, `:cert`, `:key`, `:password`,
        `:server_name`, `:server_name_indication`, `:pins`, `:versions`,
        `:ciphers`, `:ciphersuites`: every key of `:ws_port.connect/2`'s
        `tls`, checked by the same rules. Default: verify against the system
        CA store and the URL's host.
      * `:proxy` - connect through a proxy, as `:ws_port.connect/2`'s
        `proxy` option: `"http://[user:pass@]host:port"`,
        `"socks5://[user:pass@]host:port"`, a map, or `:system` (the
        `https_proxy`/`http_proxy`/`no_proxy` environment). Default none.
      * `:connect_timeout` (`:await_timeout`) - ms for DNS, TCP, TLS and the
        upgrade together. Default `15000`.
      * `:idle_timeout` (`:ws_timeout`) - ms without any frame or pong after
        which the connection is dropped (and reopened). `0` or `nil` = off
        (default).
      * `:ping_interval` - ms of silence after which the port program pings
        the server. `0` = off (default).
      * `:max_message_size` - bytes; larger messages close the connection
        (1009). Default: the port's (64 MiB). With compression it bounds the
        inflated size.
      * `:compress` - permessage-deflate: `false` (default), `true`, or a
        keyword list or map of `:client_max_window_bits`,
        `:server_max_window_bits`, `:client_no_context_takeover`,
        `:server_no_context_takeover`, `:level`, `:mem_level`, `:threshold`
        (as `WsPort.connect/2`'s `compress`).
      * `:retry` (`:ws_retry_opts`) - reconnection policy: `false` (none: the
        first loss stops the producer), `true` (the port's default policy),
        or a keyword list or map of `:max_retries` (default `:infinity`;
        `:retries_left` is taken when `:max_retries` is absent), `:delay` (ms,
        first delay, default 1000), `:max_delay` (ms, default 30000),
        `:backoff_factor` (default 2; 1 = constant), `:jitter_fraction`
        (alias `:jitter`: a fraction, 0.1 = ±10%, 0 = none; or `:full`, the
        default: each wait drawn uniformly from 0 to the delay; or `:equal`:
        from half the delay to the delay). The counter starts again
        after every successful reconnection. Default `true`.
      * `:ws_retry_fun` - `(retry_state -> retry_state | :stop)`, as in
        off_broadway_websocket: the initial state is the `:retry` map (it
        must have `:delay`; default `%{max_retries: 5, retries_left: 5,
        delay: 10_000}`; every key is carried through). After each failed
        attempt the fun gets the current state and returns the next one,
        whose `:delay` (ms) is waited before the next attempt, or `:stop` to
        give up. The fun decides what `:retries_left` means (decrement it and
        return `:stop` at 0). After a successful reconnection the state is
        the initial one again.
      * `:retry_on` - which failures are retried, as `:ws_port.connect/2`'s
        `retry_on` (see `:ws_port_retry`): a list of `:network`, `:timeout`,
        `:http_5xx`, `:http_429`, `:http_4xx`, `:tls`, `:protocol`,
        `:http_other` and at most one of `:remote_close` (every server
        close), `{:remote_close, codes}`, `{:remote_close, {:except, codes}}`;
        or `:default` / `:stay_connected`. Default `:stay_connected`: the
        classes of `connect/2`'s default and every server close (1000
        included: a feed that rotates its connections must not stop the
        pipeline) except 1002, 1003, 1007 and 1009, which answer our own
        frames.
      * `:telemetry_id` - the first element of every telemetry event name.
        Default `:websocket_producer` (off_broadway_websocket's).
      * `:on_connect` - frames sent after every (re)connection, e.g.
        subscriptions: a list of `{:text, iodata}`, `{:binary, iodata}` or
        strings (text), or a function of arity 0 returning such a list
        (called on each connection, e.g. for a fresh token). Default `[]`.
      * `:max_buffer` - how many messages beyond Broadway's demand the
        producer asks the port for and keeps ready, so that the next demand is
        met without a round trip. `0` = the port gets credit for exactly the
        demanded count. Default `10`. The producer never holds more than this
        many messages nobody asked for.

    off_broadway_websocket's `:gun_opts`, `:min_demand` and `:max_demand`
    are refused with a message saying what to use instead.

    ## Messages

    Each WebSocket message becomes

        %Broadway.Message{
          data: payload,                       # binary, as received
          metadata: %{opcode: :text | :binary, url: url, connection: n},
          acknowledger: Broadway.NoopAcknowledger.init()
        }

    `connection` counts handshakes: 1 for the first connection, 2 after the
    first reconnection, and so on; messages arrive in the order the server
    sent them. WebSocket has no acknowledgements, so the acknowledger is
    Broadway's no-op one: a failed message is not redelivered (handle
    failures in `c:Broadway.handle_failed/2`). A `:transformer` receives this
    message and must return a `%Broadway.Message{}` (e.g. with
    `Broadway.Message.update_data/2`).

    ## Connection life

    The connection is opened in `init/1` without waiting (the pipeline starts
    even if the server is down). It is reopened after failures according to
    `:retry`/`:ws_retry_fun`. When it is closed for good (retries exhausted,
    retrying disabled, or a failure class not in `:retry_on`, e.g. HTTP 401)
    the producer stops with `{:shutdown, {:ws_port_closed, reason}}` and
    Broadway's supervisor restarts it. `prepare_for_draining/1` (Broadway
    shutting down) stops asking for data and closes the connection with code
    1000.

    ## Telemetry

    Emitted with `:telemetry.execute/3` when the `:telemetry` application is
    loaded (nothing otherwise). Every event's metadata has `:url`.

      * `[telemetry_id, :connection, :success]` - handshake completed.
        Measurements `%{count: 1}`; metadata `%{url, connection, protocol}`.
      * `[telemetry_id, :connection, :failure]` - a connection attempt failed
        (connect, TLS, HTTP status, ...). Measurements `%{count: 1}`; metadata
        `%{url, reason}` plus `:attempt` and `:delay_ms` (the wait before the
        next attempt) when the port program retries.
      * `[telemetry_id, :connection, :disconnected]` - an established
        connection was lost. Measurements `%{count: 1}`; metadata as
        `:failure`.
      * `[telemetry_id, :connection, :timeout]` - nothing (no frame, no pong)
        arrived for `:idle_timeout` ms. Measurements `%{count: 1}`; metadata
        `%{url, reason: :idle_timeout}`. Followed by `:disconnected`.
      * `[telemetry_id, :connection, :status]` - measurements `%{value: 1}`
        when the connection comes up, `%{value: 0}` when it goes down (a gauge
        to plot or alert on); metadata `%{url}`.
      * `[telemetry_id, :connection, :closed]` - the connection is gone for
        good and the producer stops (retries exhausted, or a failure that is
        not retried). Measurements `%{count: 1}`; metadata `%{url, reason}`.
        Alert on this one, and on `:failure` counts growing.

    ws_port's own `[:ws_port, :connection, :up | :down | :closed]` events
    (with durations) are emitted as well, see `:ws_port_telemetry`.
    """

    use GenStage
    @behaviour Broadway.Producer

    require Logger

    alias Broadway.Message
    alias Broadway.NoopAcknowledger
    alias WsPort.ProducerCore
    alias WsPort.ProducerOptions

    @impl Broadway.Producer
    def prepare_for_start(_module, broadway_opts) do
      {_module, opts} = broadway_opts[:producer][:module]

      case ProducerOptions.validate(opts) do
        {:ok, _config} ->
          {[], broadway_opts}

        {:error, message} ->
          raise ArgumentError, "invalid options for WsPort.Producer: " <> message
      end
    end

    @impl GenStage
    def init(opts) do
      case ProducerCore.init(opts, build: &message/2) do
        {:ok, core} ->
          {:producer, core}

        {:error, message} when is_binary(message) ->
          raise ArgumentError, "invalid options for WsPort.Producer: " <> message

        {:error, reason} ->
          {:stop, reason}
      end
    end

    @doc false
    def message(data, metadata),
      do: %Message{data: data, metadata: metadata, acknowledger: NoopAcknowledger.init()}

    @impl GenStage
    def handle_demand(demand, core) do
      {events, core} = ProducerCore.handle_demand(demand, core)
      {:noreply, events, core}
    end

    @impl GenStage
    def handle_info({__MODULE__, :stop, reason}, core), do: {:stop, reason, core}

    def handle_info(msg, core) do
      case ProducerCore.handle_info(msg, core) do
        {:ok, events, core} ->
          {:noreply, events, core}

        # the last buffered events go out first, then the producer stops
        {:stop, reason, events, core} ->
          send(self(), {__MODULE__, :stop, reason})
          {:noreply, events, core}

        :unknown ->
          Logger.debug("WsPort.Producer: unexpected message #{inspect(msg)}")
          {:noreply, [], core}
      end
    end

    @impl Broadway.Producer
    def prepare_for_draining(core) do
      {events, core} = ProducerCore.prepare_for_draining(core)
      {:noreply, events, core}
    end

    @impl GenStage
    def terminate(_reason, core) do
      ProducerCore.terminate(core)
      :ok
    end
  end
end
