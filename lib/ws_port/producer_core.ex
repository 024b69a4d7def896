defmodule WsPort.ProducerCore do
  @moduledoc """
  The logic of `WsPort.Producer`, without Broadway: it owns one ws_port
  connection and turns Broadway's demand into the port program's credit.
  The Broadway producer is a thin shell that calls these functions from its
  callbacks; the tests drive them directly against the real port program.

  All functions run in the process that owns the connection (the producer).

    * `init/2` validates the options (`WsPort.ProducerOptions`) and opens
      the connection with `await: false, active: false`: nothing is read
      from the socket before there is demand.
    * `handle_demand/2` adds demand and returns the events that can be
      emitted at once (from the buffer).
    * `handle_info/2` handles the connection's owner messages: a frame becomes
      an event (emitted at once when there is demand, else buffered),
      up/down/closed become telemetry events.
    * `prepare_for_draining/1` stops asking for data and closes the
      connection (code 1000).

  ## Demand and credit

  The core keeps `pending` (demand not yet met), `buffered` (messages
  received but not yet asked for) and `outstanding` (credit given to the
  port program and not yet used). It gives credit with
  `:ws_port.setopts(conn, active: n)` (gen_tcp semantics: `n` is added) so
  that `outstanding + buffered = pending + max_buffer`, never more. When
  the credit is used up the port program stops reading the socket and TCP
  makes the server wait. So the producer holds at most `max_buffer`
  messages nobody asked for, and with `max_buffer: 0` the port gets exactly
  the demanded count. Credit survives reconnections (the port program keeps
  it); after a restart of the port program the credit is set again.

  Events are what the `:build` function given to `init/2` returns for
  `(payload, metadata)`; the default builds `%{data: payload, metadata:
  metadata}`. Metadata: `%{opcode: :text | :binary, url: url, connection:
  n}` where `n` counts handshakes (1 for the first connection, 2 after the
  first reconnect, ...).
  """

  require Logger

  alias WsPort.ProducerOptions

  defstruct [
    :config,
    :conn,
    :client,
    :build,
    :telemetry,
    status: :connecting,
    pending: 0,
    buffer: :queue.new(),
    buffered: 0,
    outstanding: 0,
    connections: 0,
    resync: false,
    draining: false
  ]

  @type t :: %__MODULE__{}

  @typedoc "What `handle_info/2` returns."
  @type info_result ::
          {:ok, [term()], t()} | {:stop, term(), [term()], t()} | :unknown

  @doc """
  Validates `opts` and opens the connection (owned by the caller).

  `extra` may hold `build: fun(payload, metadata) -> event` and
  `client: module` (default `:ws_port`; a module with `connect/2`,
  `setopts/2`, `send/2` and `close/1` of the same contract) and
  `telemetry: fun(event, measurements, metadata)` (default
  `:ws_port_telemetry.execute/3`, which calls `:telemetry.execute/3` when
  telemetry is loaded and does nothing otherwise).
  Returns `{:error, message}` for bad options and `{:error, reason}` when
  the connection cannot even be started (e.g. ws_port not running).
  """
  @spec init(keyword() | map(), keyword()) :: {:ok, t()} | {:error, String.t() | term()}
  def init(opts, extra \\ []) do
    with {:ok, config} <- ProducerOptions.validate(opts) do
      client = Keyword.get(extra, :client, :ws_port)
      build = Keyword.get(extra, :build, &default_build/2)
      telemetry = Keyword.get(extra, :telemetry, &:ws_port_telemetry.execute/3)

      if client == :ws_port, do: {:ok, _} = Application.ensure_all_started(:ws_port)

      case client.connect(config.url, ProducerOptions.connect_opts(config)) do
        {:ok, conn} ->
          {:ok,
           %__MODULE__{
             config: config,
             conn: conn,
             client: client,
             build: build,
             telemetry: telemetry
           }}

        {:error, reason} ->
          {:error, {:connect, reason}}
      end
    end
  end

  @doc false
  def default_build(data, metadata), do: %{data: data, metadata: metadata}

  @doc "The connection handle."
  @spec conn(t()) :: :ws_port.conn()
  def conn(%__MODULE__{conn: conn}), do: conn

  @doc "Counters, for tests and debugging."
  @spec counters(t()) :: map()
  def counters(%__MODULE__{} = s),
    do: %{
      pending: s.pending,
      buffered: s.buffered,
      outstanding: s.outstanding,
      status: s.status,
      connections: s.connections,
      draining: s.draining
    }

  @doc """
  Adds `demand` (Broadway's `handle_demand/2`). Returns the events that can
  be emitted now (from the buffer) and gives the port the credit needed.
  """
  @spec handle_demand(non_neg_integer(), t()) :: {[term()], t()}
  def handle_demand(demand, %__MODULE__{} = s) when is_integer(demand) and demand >= 0 do
    {events, s} = take_buffered(%{s | pending: s.pending + demand})
    {events, grant(s)}
  end

  @doc """
  Handles one message sent to the producer. Returns `:unknown` for a
  message that is not about this producer's connection.
  """
  @spec handle_info(term(), t()) :: info_result()
  def handle_info({:ws_port, conn, {opcode, data}}, %__MODULE__{conn: conn} = s)
      when opcode in [:text, :binary] do
    event = s.build.(data, %{opcode: opcode, url: s.config.url, connection: s.connections})
    s = %{s | outstanding: max(s.outstanding - 1, 0)}

    if s.pending > 0 do
      {:ok, [event], %{s | pending: s.pending - 1}}
    else
      # only possible within max_buffer (credit is bounded), except just
      # after a port restart (see resync)
      {:ok, [], %{s | buffer: :queue.in(event, s.buffer), buffered: s.buffered + 1}}
    end
  end

  def handle_info({:ws_port_up, conn, info}, %__MODULE__{conn: conn} = s) do
    s = %{s | status: :up, connections: s.connections + 1}
    emit(s, :success, %{count: 1}, %{connection: s.connections, protocol: info[:protocol]})
    emit(s, :status, %{value: 1}, %{})
    send_on_connect(s)
    s = if s.resync, do: resync(s), else: s
    {:ok, [], s}
  end

  def handle_info({:ws_port_down, conn, reason}, %__MODULE__{conn: conn} = s),
    do: handle_info({:ws_port_down, conn, reason, %{}}, s)

  def handle_info({:ws_port_down, conn, reason, info}, %__MODULE__{conn: conn} = s) do
    lost(s, reason, info)
    resync = match?({:port_exit, _}, reason) or s.resync
    {:ok, [], %{s | status: :down, resync: resync}}
  end

  def handle_info({:ws_port_closed, conn, reason}, %__MODULE__{conn: conn} = s) do
    lost(s, reason, %{})
    emit(s, :closed, %{count: 1}, %{reason: reason})

    Logger.error(
      "WsPort.Producer: connection to #{s.config.url} closed for good: #{inspect(reason)}; " <>
        "the producer stops"
    )

    {events, s} = take_buffered(%{s | status: :closed})
    {:stop, {:shutdown, {:ws_port_closed, reason}}, events, s}
  end

  def handle_info({:ws_port_passive, conn}, %__MODULE__{conn: conn} = s), do: {:ok, [], s}
  def handle_info({:ws_port_pong, conn, _rtt}, %__MODULE__{conn: conn} = s), do: {:ok, [], s}

  def handle_info({:ws_port_error, conn, {what, detail}}, %__MODULE__{conn: conn} = s) do
    Logger.warning("WsPort.Producer: #{s.config.url}: #{inspect(what)}: #{inspect(detail)}")
    {:ok, [], s}
  end

  def handle_info(_other, %__MODULE__{}), do: :unknown

  @doc """
  Stops taking new data (no more credit) and closes the connection with code
  1000. Buffered messages are emitted as far as there is demand; the
  remaining ones are dropped (and counted in a log line). Messages already
  in the mailbox still become events when there is demand.
  """
  @spec prepare_for_draining(t()) :: {[term()], t()}
  def prepare_for_draining(%__MODULE__{} = s) do
    s = close_conn(%{s | draining: true})
    {events, s} = take_buffered(s)

    if s.buffered > 0 do
      Logger.info(
        "WsPort.Producer: draining #{s.config.url}: #{s.buffered} buffered messages dropped"
      )
    end

    {events, %{s | buffer: :queue.new(), buffered: 0}}
  end

  @doc "Closes the connection if it is still open (the producer's `terminate/2`)."
  @spec terminate(t()) :: t()
  def terminate(%__MODULE__{} = s), do: close_conn(s)

  ## internals

  defp close_conn(%__MODULE__{status: :closed} = s), do: s

  defp close_conn(%__MODULE__{} = s) do
    was_up = s.status == :up
    :ok = s.client.close(s.conn)
    if was_up, do: emit(s, :status, %{value: 0}, %{})
    %{s | status: :closed, outstanding: 0}
  end

  defp take_buffered(%__MODULE__{pending: pending, buffered: buffered} = s)
       when pending == 0 or buffered == 0,
       do: {[], s}

  defp take_buffered(%__MODULE__{} = s) do
    n = min(s.pending, s.buffered)
    {taken, rest} = :queue.split(n, s.buffer)

    {:queue.to_list(taken), %{s | buffer: rest, buffered: s.buffered - n, pending: s.pending - n}}
  end

  defp grant(%__MODULE__{draining: true} = s), do: s
  defp grant(%__MODULE__{status: :closed} = s), do: s

  defp grant(%__MODULE__{} = s) do
    want = s.pending + s.config.max_buffer - s.buffered - s.outstanding

    if want > 0 do
      case s.client.setopts(s.conn, active: want) do
        :ok -> %{s | outstanding: s.outstanding + want}
        {:error, _} -> s
      end
    else
      s
    end
  end

  # After a restart of the port program the connection was opened again
  # with the last `active` value given, not the credit that was left: set
  # it to 0 and give it again from our own accounting.
  defp resync(%__MODULE__{} = s) do
    _ = s.client.setopts(s.conn, active: false)
    grant(%{s | outstanding: 0, resync: false})
  end

  defp send_on_connect(%__MODULE__{config: %{on_connect: on_connect}} = s) do
    frames = if is_function(on_connect, 0), do: on_connect.(), else: on_connect

    Enum.each(frames, fn frame ->
      message = if is_binary(frame), do: {:text, frame}, else: frame

      case s.client.send(s.conn, message) do
        :ok ->
          :ok

        {:error, reason} ->
          Logger.warning(
            "WsPort.Producer: #{s.config.url}: on_connect frame not sent: #{inspect(reason)}"
          )
      end
    end)
  end

  # The connection was lost or an attempt failed.
  defp lost(s, reason, info) do
    meta = Map.merge(%{reason: reason}, Map.take(info, [:attempt, :delay_ms, :unsent_bytes]))

    if reason == :idle_timeout, do: emit(s, :timeout, %{count: 1}, meta)

    if s.status == :up do
      emit(s, :disconnected, %{count: 1}, meta)
      emit(s, :status, %{value: 0}, %{})
    else
      emit(s, :failure, %{count: 1}, meta)
    end
  end

  defp emit(%__MODULE__{config: config, telemetry: telemetry}, event, measurements, metadata) do
    telemetry.(
      [config.telemetry_id, :connection, event],
      measurements,
      Map.put(metadata, :url, config.url)
    )
  end
end
