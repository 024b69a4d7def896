defmodule WsPort.Phoenix.Client do
  @moduledoc """
  A Phoenix Channels client as a process with callbacks, GenServer-like,
  with a default for every callback (the Elixir face of
  `:ws_port_phoenix_client`).

      defmodule MyApp.RoomClient do
        use WsPort.Phoenix.Client

        @impl true
        def init(arg) do
          :ok = WsPort.Phoenix.Client.join("room:lobby", %{"user" => arg[:user]})
          {:ok, %{messages: 0}}
        end

        @impl true
        def handle_join("room:lobby", {:ok, _reply}, state) do
          {:ok, _ref} = WsPort.Phoenix.Client.push("room:lobby", "new_msg", %{"body" => "hi"})
          {:ok, state}
        end

        @impl true
        def handle_message("room:lobby", "new_msg", payload, state) do
          IO.inspect(payload)
          {:ok, %{state | messages: state.messages + 1}}
        end
      end

      {:ok, pid} = MyApp.RoomClient.start_link(url: "ws://localhost:4000/socket/websocket",
                                                params: %{token: "T"}, init_arg: [user: "ann"])

  The process connects in the background, reconnects with phoenix.js's
  backoff, answers heartbeats and rejoins every topic joined and not left
  (after a reconnect and after a channel crash, `phx_error`): no code of
  yours is needed for that. At most `:window` messages (default 100) are
  delivered and not yet handled: a slow `handle_message/4` slows the
  server down through TCP.

  ## Callbacks

  All optional; each returns `{:ok, state}` (or `{:noreply, state}`) or
  `{:stop, reason, state}` (`handle_call/3` as a GenServer's):

    * `init(arg)` - `{:ok, state}`; `join/2` here joins once connected
    * `handle_connect(state)` - after every handshake
    * `handle_disconnect(reason, state)` - the connection was lost and is
      being reopened; when it is gone for good (a refused upgrade) the
      process then exits with `{:closed, reason}`
    * `handle_join(topic, {:ok, reply} | {:error, reply}, state)` - the
      answer to a join or a rejoin; a refused topic is not retried
    * `handle_message(topic, event, payload, state)` - a server push or
      broadcast (string keys, `nil` for null, `{:binary, data}` for
      binary frames)
    * `handle_reply(ref, {:ok, reply} | {:error, reply}, state)` - the reply
      to `push/3`, or `{:error, :disconnected | {:topic_closed, _} | :left}`
    * `handle_topic_close(topic, :crashed | :closed, state)` - the channel
      crashed (it is rejoined) or the server closed it (it is forgotten)
    * `handle_leave(topic, state)`, `handle_info/2`, `handle_cast/2`,
      `handle_call/3`, `terminate/2`

  From inside callbacks: `join/2`, `push/3` (returns `{:ok, ref}`),
  `leave/1`.

  ## Starting

  `start_link(opts)` (given by `use`) needs `:url`; the other options are
  those of `WsPort.Phoenix.connect/2` (`:params`, `:heartbeat_interval`,
  `:json`, `:serializer`, `:headers`, `:tls`, `:retry`, ...) plus `:name`,
  `:init_arg` and `:window`. `use` also gives `child_spec/1` (`restart:
  :transient`) for your own tree; under `WsPort.ClientSupervisor`:
  `WsPort.ClientSupervisor.start_client(url, module: MyApp.RoomClient,
  params: ...)`.
  """

  @doc false
  defmacro __using__(_opts) do
    quote location: :keep do
      @behaviour :ws_port_phoenix_client

      @doc """
      A child spec starting `start_link(opts)`, `restart: :transient`; `:id`
      in `opts` names the child (default: this module).
      """
      @spec child_spec(keyword()) :: Supervisor.child_spec()
      def child_spec(opts) do
        %{
          id: Keyword.get(opts, :id, __MODULE__),
          # the secrets (:tls key and password, :proxy, header values) as
          # funs: the supervisor keeps the arguments and prints them
          start: {__MODULE__, :start_link, [:ws_port_proto.conceal(Keyword.delete(opts, :id))]},
          restart: :transient,
          shutdown: 5000,
          type: :worker
        }
      end

      @doc "Starts this client; `opts` needs `:url` (see `WsPort.Phoenix.Client`)."
      @spec start_link(keyword()) :: GenServer.on_start()
      def start_link(opts), do: WsPort.Phoenix.Client.start_link(__MODULE__, opts)

      @impl true
      def init(arg), do: {:ok, arg}
      @impl true
      def handle_connect(state), do: {:ok, state}
      @impl true
      def handle_disconnect(_reason, state), do: {:ok, state}
      @impl true
      def handle_join(_topic, _result, state), do: {:ok, state}
      @impl true
      def handle_message(_topic, _event, _payload, state), do: {:ok, state}
      @impl true
      def handle_reply(_ref, _reply, state), do: {:ok, state}
      @impl true
      def handle_topic_close(_topic, _reason, state), do: {:ok, state}
      @impl true
      def handle_leave(_topic, state), do: {:ok, state}
      @impl true
      def handle_info(_msg, state), do: {:ok, state}
      @impl true
      def handle_cast(_msg, state), do: {:ok, state}
      @impl true
      def handle_call(request, _from, state),
        do: {:reply, {:error, {:not_implemented, request}}, state}

      @impl true
      def terminate(_reason, _state), do: :ok

      defoverridable init: 1,
                     handle_connect: 1,
                     handle_disconnect: 2,
                     handle_join: 3,
                     handle_message: 4,
                     handle_reply: 3,
                     handle_topic_close: 3,
                     handle_leave: 2,
                     handle_info: 2,
                     handle_cast: 2,
                     handle_call: 3,
                     terminate: 2,
                     child_spec: 1
    end
  end

  @doc """
  Starts a client of `module`; `opts` needs `:url` (a string or a
  `%URI{}`; without it, `{:error, {:bad_option, :url, :undefined}}`). Payloads decode with
  `nil` for null (an Elixir module's default) unless `:null` is given.
  Options, URL, module and name are checked before a process starts (error
  returns, not exit signals to the caller): `{:error, {:bad_option, name,
  value}}`, `{:error, {:invalid_url, detail}}`, `{:error, {:bad_module,
  module, why}}`.
  """
  @spec start_link(module(), keyword()) :: GenServer.on_start()
  def start_link(module, opts) do
    case Keyword.pop(opts, :url) do
      {nil, _} -> {:error, {:bad_option, :url, :undefined}}
      {url, opts} -> :ws_port_phoenix_client.start_link(module, url, elixir_opts(opts))
    end
  end

  @doc "As `start_link/2`, not linked."
  @spec start(module(), keyword()) :: GenServer.on_start()
  def start(module, opts) do
    case Keyword.pop(opts, :url) do
      {nil, _} -> {:error, {:bad_option, :url, :undefined}}
      {url, opts} -> :ws_port_phoenix_client.start(module, url, elixir_opts(opts))
    end
  end

  defp elixir_opts(opts), do: Map.new(opts)

  @doc "Joins `topic` (from a callback); `handle_join/3` gets the answer."
  @spec join(String.t(), term()) :: :ok | {:error, term()}
  defdelegate join(topic, params \\ %{}), to: :ws_port_phoenix_client

  @doc "Pushes `event` (from a callback); returns the ref `handle_reply/3` will get."
  @spec push(String.t(), String.t(), term()) :: {:ok, String.t()} | {:error, term()}
  defdelegate push(topic, event, payload), to: :ws_port_phoenix_client

  @doc "Leaves `topic` (from a callback); it is not rejoined any more."
  @spec leave(String.t()) :: :ok | {:error, term()}
  defdelegate leave(topic), to: :ws_port_phoenix_client

  @doc "A call to the client's `handle_call/3`."
  @spec call(GenServer.server(), term(), timeout()) :: term()
  defdelegate call(client, request, timeout \\ 5000), to: :ws_port_phoenix_client

  @doc "A cast to the client's `handle_cast/2`."
  @spec cast(GenServer.server(), term()) :: :ok
  defdelegate cast(client, msg), to: :ws_port_phoenix_client

  @doc "Stops the client (its socket is closed with 1000); `:ok` also when it has ended already."
  @spec stop(GenServer.server()) :: :ok
  defdelegate stop(client), to: :ws_port_phoenix_client

  @doc "`%{topics: %{topic => state}, stats: %{...}}` of the client's socket."
  @spec info(GenServer.server()) :: map()
  defdelegate info(client), to: :ws_port_phoenix_client
end
