defmodule WsPort.Client do
  @moduledoc """
  A long-lived WebSocket client as a process with callbacks (the Elixir face
  of `:ws_port_client`).

      defmodule MyApp.Ticker do
        use WsPort.Client

        def start_link(opts) do
          WsPort.Client.start_link(__MODULE__, "wss://example.com/ws",
            init_arg: opts, name: __MODULE__, heartbeat: %{type: :deribit, interval: 30_000})
        end

        @impl true
        def handle_connect(_info, state) do
          # every (re)connect: authenticate and subscribe again
          {:reply, [{:text, ~s({"method":"public/subscribe","params":{"channels":["trades"]}})}], state}
        end

        @impl true
        def handle_frame({:text, json}, state) do
          IO.puts(json)
          {:ok, state}
        end
      end

  Put it in a supervision tree as `{MyApp.Ticker, opts}`: `use` defines a
  `child_spec/1` with `restart: :transient` (a client ended by `close/1` or
  `{:stop, :normal, state}` is not restarted, a crash is).

  The port program reconnects with backoff (`retry`, on by default), after
  any close by the server too (`retry_on: :stay_connected` by default: every
  code but 1002, 1003, 1007 and 1009, which answer our own frames and end
  the client); `handle_connect/2` runs after every handshake,
  `handle_disconnect/2` for every loss. Credit is managed for you: at most `:window` messages (default
  100) are ever waiting in the client's mailbox, because the port stops
  reading the socket until they are handled. So a slow `handle_frame/2`
  slows the server down instead of filling memory.

  ## Callback returns

  `handle_connect/2`, `handle_frame/2`, `handle_disconnect/2`,
  `handle_info/2` and `handle_cast/2` return `{:ok, state}` (or
  `{:noreply, state}`), `{:reply, frames, state}` to send frames, or
  `{:stop, reason, state}`. `handle_call/3` returns as a GenServer's, plus
  `{:reply, reply, frames, state}`. A frame is `{:text, iodata}`,
  `{:binary, iodata}`, `{:ping, iodata}` or a binary (sent as text).

  ## Options of `start_link/3`

    * `:name` - a name to register the process under.
    * `:init_arg` - the argument of `c:init/1` (default `[]`).
    * `:window` - credit, the most messages delivered and not yet handled
      (default 100); `:infinity` turns flow control off.
    * `:heartbeat` - `:ping_pong` (default: WebSocket pings by the port
      program; `:ping_interval` 15000 and `:idle_timeout` 45000 unless
      given), `:none`, `:deribit`, `%{type: :deribit, interval: ms}`, or a
      module implementing `:ws_port_heartbeat` (`Module` or `{Module, opts}`).
      After `max_misses` intervals in a row without a heartbeat the
      connection is dropped and opened again (reason
      `{:heartbeat_timeout, misses}` in `c:handle_disconnect/2`).
    * `:on_connect`, `:on_disconnect` - `fn pid -> ... end` or `{m, f, args}`,
      run in the client after each handshake and when that connection is
      lost or the client ends (e.g. `:pg.join/3` and `:pg.leave/3`).
    * every option of `WsPort.connect/2` (`:headers`, `:protocols`, `:tls`,
      `:retry`, `:retry_on`, `:send_queue`, `:ping_interval`, `:compress`, ...) except
      `:active` and `:await`, which the client sets.

  Any other key, or a key given twice, is refused: `{:error, {:bad_option,
  name, value}}` (`{:bad_option, {:duplicate, name}, value}`), returned by
  `start_link` without starting a process.

  A `client` that is not a pid or a name (as `GenServer` takes them), or a
  timeout that is not `:infinity` nor an integer >= 0, raises
  `ArgumentError` naming the argument, as `WsPort`'s functions do.
  """

  @typedoc "A running client: a pid or a registered name."
  @type client :: GenServer.server()

  @typedoc "A frame to send."
  @type frame :: {:text | :binary | :ping | :pong, iodata()} | binary()

  @typedoc "What `c:handle_disconnect/2` gets."
  @type disconnect_info :: %{
          reason: term(),
          attempt: non_neg_integer(),
          delay_ms: non_neg_integer() | :manual | nil | :undefined,
          unsent_bytes: non_neg_integer(),
          final: boolean()
        }

  @typedoc "What most callbacks return."
  @type result ::
          {:ok, term()}
          | {:noreply, term()}
          | {:reply, frame() | [frame()], term()}
          | {:stop, term(), term()}

  @doc "Runs in the new process before it connects. Default: `{:ok, arg}`."
  @callback init(arg :: term()) :: {:ok, term()} | {:stop, term()} | :ignore

  @doc """
  After every handshake, the first and each reconnect: authenticate and
  subscribe here. `info` has `:status`, `:headers`, `:protocol`, `:url` and
  `:reconnects`. Default: `{:ok, state}`.
  """
  @callback handle_connect(info :: map(), state :: term()) :: result()

  @doc "One whole message from the server."
  @callback handle_frame({:text | :binary, binary()}, state :: term()) :: result()

  @doc """
  The connection was lost. With `final: false` it is being opened again and
  `{:ok, state}` lets that go on; with `final: true` (retries exhausted or a
  failure not retried) `{:ok, state}` ends the client with reason
  `{:closed, reason}`, which a transient supervisor restarts. `{:stop,
  reason, state}` closes and stops. Default: `{:ok, state}`.
  """
  @callback handle_disconnect(disconnect_info(), state :: term()) :: result()

  @doc "Any other message. Default: `{:ok, state}`."
  @callback handle_info(msg :: term(), state :: term()) :: result()

  @doc "`cast/2`. Default: `{:ok, state}`."
  @callback handle_cast(msg :: term(), state :: term()) :: result()

  @doc """
  `call/3`. As `c:GenServer.handle_call/3`, plus `{:reply, reply, frames,
  state}`; answer later with `reply/2`. Default: `{:reply, {:error,
  {:unknown_call, request}}, state}`.
  """
  @callback handle_call(request :: term(), GenServer.from(), state :: term()) ::
              {:reply, term(), term()}
              | {:reply, term(), frame() | [frame()], term()}
              | {:noreply, term()}
              | {:stop, term(), term(), term()}
              | {:stop, term(), term()}

  @doc "The client ends (it traps exits). Default: `:ok`."
  @callback terminate(reason :: term(), state :: term()) :: term()

  @optional_callbacks init: 1,
                      handle_connect: 2,
                      handle_disconnect: 2,
                      handle_info: 2,
                      handle_cast: 2,
                      handle_call: 3,
                      terminate: 2

  defmacro __using__(_opts) do
    quote location: :keep do
      @behaviour WsPort.Client

      @doc """
      A child spec starting `start_link(arg)`, `restart: :transient`; `:id`
      in a keyword `arg` names the child (default: this module).
      """
      @spec child_spec(term()) :: Supervisor.child_spec()
      def child_spec(arg) do
        id = if Keyword.keyword?(arg), do: Keyword.get(arg, :id, __MODULE__), else: __MODULE__

        # the secrets (:tls key and password, :proxy, header values) as
        # funs: the supervisor keeps the arguments and prints them
        arg = if Keyword.keyword?(arg), do: :ws_port_proto.conceal(arg), else: arg

        %{
          id: id,
          start: {__MODULE__, :start_link, [arg]},
          restart: :transient,
          shutdown: 5000,
          type: :worker
        }
      end

      @doc """
      Starts this client. `opts` needs `:url` (without it, `{:error,
      {:bad_option, :url, :undefined}}`); every other key must be an
      option of `WsPort.Client.start_link/3` (or `:id`), else
      `{:error, {:bad_option, name, value}}`: a misspelled option is not
      ignored. Data of your own for `c:init/1` goes in `:init_arg`; without
      it, `c:init/1` gets the whole list (started from `child_spec/1`: with
      the `:tls` key and password, `:proxy` and header values as funs).
      """
      @spec start_link(keyword()) :: GenServer.on_start()
      def start_link(opts) do
        case Keyword.fetch(opts, :url) do
          {:ok, url} -> WsPort.Client.start_link(__MODULE__, url, WsPort.Client.split_opts(opts))
          :error -> {:error, {:bad_option, :url, :undefined}}
        end
      end

      @impl WsPort.Client
      def init(arg), do: {:ok, arg}

      @impl WsPort.Client
      def handle_connect(_info, state), do: {:ok, state}

      @impl WsPort.Client
      def handle_disconnect(_info, state), do: {:ok, state}

      @impl WsPort.Client
      def handle_info(_msg, state), do: {:ok, state}

      @impl WsPort.Client
      def handle_cast(_msg, state), do: {:ok, state}

      @impl WsPort.Client
      def handle_call(request, _from, state),
        do: {:reply, {:error, {:unknown_call, request}}, state}

      @impl WsPort.Client
      def terminate(_reason, _state), do: :ok

      defoverridable child_spec: 1,
                     start_link: 1,
                     init: 1,
                     handle_connect: 2,
                     handle_disconnect: 2,
                     handle_info: 2,
                     handle_cast: 2,
                     handle_call: 3,
                     terminate: 2
    end
  end

  @doc """
  Starts a client process linked to the caller, with callback `module`.
  Returns once `c:init/1` has run; the connection opens in the background.
  Checked before a process starts (an error return, not an exit signal to
  the caller): a bad option (`:name` included) gives `{:error,
  {:bad_option, name, value}}`, a bad URL `{:error, {:invalid_url,
  detail}}`, a module that cannot be loaded or has no `c:handle_frame/2`
  `{:error, {:bad_module, module, why}}`.
  """
  @spec start_link(module(), String.t() | URI.t(), keyword() | map()) :: GenServer.on_start()
  def start_link(module, url, opts \\ []), do: :ws_port_client.start_link(module, url, opts)

  @doc "As `start_link/3`, without a link."
  @spec start(module(), String.t() | URI.t(), keyword() | map()) :: GenServer.on_start()
  def start(module, url, opts \\ []), do: :ws_port_client.start(module, url, opts)

  @doc """
  A child spec for a client given as options: `:url`, `:module` (default
  `:ws_port_client_forward`), `:id`, and client options. Restart
  `:transient`.
  """
  @spec child_spec(keyword() | map()) :: Supervisor.child_spec()
  def child_spec(opts), do: :ws_port_client.child_spec(opts)

  @doc """
  Sends a frame (or a list of frames, in order; a list with an element that
  is not a frame is `{:error, {:bad_frame, element}}` and none of it is
  sent). `{:error, :not_connected}`
  while reconnecting (unless `:send_queue` keeps it); each failure counts
  in the client's `errors`. Not for use inside the client's own callbacks:
  return `{:reply, frames, state}` there.
  """
  @spec send_frame(client(), frame() | [frame()], timeout()) :: :ok | {:error, term()}
  def send_frame(client, frame, timeout \\ 5000),
    do: :ws_port_client.send_frame(client, frame, timeout)

  @doc """
  Calls the client's `c:handle_call/3`. As `GenServer.call/3`, it exits
  (`:noproc`, `:timeout`, ...) when the client is not running or does not
  answer in time; so do `health/2` and `connection/1`. `send_frame/3`
  returns those as `{:error, reason}` and `close/1` as `:ok`.
  """
  @spec call(client(), term(), timeout()) :: term()
  def call(client, request, timeout \\ 5000), do: :ws_port_client.call(client, request, timeout)

  @doc "Casts to the client's `c:handle_cast/2`."
  @spec cast(client(), term()) :: :ok
  def cast(client, msg), do: :ws_port_client.cast(client, msg)

  @doc "Answers a `c:handle_call/3` that returned `{:noreply, state}`."
  @spec reply(GenServer.from(), term()) :: :ok
  def reply(from, reply), do: :ws_port_client.reply(from, reply)

  @doc """
  Closes the connection (1000) and stops the client normally (not
  restarted). Frames already delivered but not yet handled are dropped (not
  passed to `c:handle_frame/2`; at most 31 more may still be handled):
  `close/1` does not wait for a backlog.
  """
  @spec close(client()) :: :ok
  def close(client), do: :ws_port_client.close(client)

  @doc """
  The client's health: `:connected`, `:status`, `:heartbeat`,
  `:last_rtt_us`, `:misses` (in a row), `:total_misses`, `:max_misses`,
  `:reconnects`, `:disconnects`, `:errors`, `:last_error`, `:attempt`,
  `:uptime_ms` (of the current connection) and `:age_ms` (of the process).
  """
  @spec health(client(), timeout()) :: map()
  def health(client, timeout \\ 5000), do: :ws_port_client.health(client, timeout)

  @doc "The client's current `WsPort` connection handle."
  @spec connection(client()) :: {:ok, term()} | {:error, :not_connected}
  def connection(client), do: :ws_port_client.connection(client)

  @doc """
  The options of `start_link/3` from the keyword list given to the default
  `start_link/1` of `use WsPort.Client`: all but `:url` and `:id`, with the
  whole list as `:init_arg` unless one is given. Keys `start_link/3` does
  not know stay in, so that it refuses them (`{:error, {:bad_option, name,
  value}}`).
  """
  @spec split_opts(keyword()) :: keyword()
  def split_opts(opts) do
    opts
    |> Keyword.drop([:url, :id])
    |> then(fn rest ->
      if Keyword.has_key?(rest, :init_arg), do: rest, else: rest ++ [init_arg: opts]
    end)
  end
end
