defmodule WsPort.ClientSupervisor do
  @moduledoc """
  A dynamic supervisor of `WsPort.Client` processes, with health-based load
  balancing over them (the Elixir face of `:ws_port_client_sup`).

  The library starts none: add it to your tree.

      children = [
        WsPort.ClientSupervisor,
        # or {WsPort.ClientSupervisor, max_restarts: 20, max_seconds: 60, name: MyApp.WsClients}
      ]

      {:ok, client} =
        WsPort.ClientSupervisor.start_client("wss://example.com/ws",
          module: MyApp.Ticker,
          heartbeat: %{type: :deribit, interval: 30_000},
          on_connect: fn pid -> :pg.join(:ws_pool, pid) end,
          on_disconnect: fn pid -> :pg.leave(:ws_pool, pid) end
        )

      :ok = WsPort.ClientSupervisor.send_balanced({:text, "hello"})

  Clients are `:transient`: a crashing client is restarted (a new process
  that connects and runs `handle_connect/2` again); one stopped with
  `stop_client/1` or `WsPort.Client.close/1` is not. More than
  `:max_restarts` restarts within `:max_seconds` (default 10 in 60) end the
  supervisor itself, as for any OTP supervisor.

  Functions without a supervisor argument use the default name
  `:ws_port_client_sup`; others take `supervisor: name`.
  """

  @doc """
  Starts the supervisor. Options: `:name` (default `:ws_port_client_sup`,
  `false` for none), `:max_restarts` (10), `:max_seconds` (60). Another
  key or a bad value is `{:error, {:bad_option, name, value}}`.
  """
  @spec start_link(keyword()) :: Supervisor.on_start()
  def start_link(opts \\ []), do: :ws_port_client_sup.start_link(opts)

  @doc "A child spec for the supervisor (options as `start_link/1`, plus `:id`)."
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(opts), do: :ws_port_client_sup.child_spec(opts)

  @doc """
  Starts a supervised client. `url_or_config` is the URL, or a keyword
  list or map with `:url` and options; `opts` are merged over it: the
  options of `WsPort.Client.start_link/3`, plus `:module` (the callback
  module; default `:ws_port_client_forward`, which forwards
  `{:ws_port_client, pid, frame}` to the caller) and `:supervisor`.
  """
  @spec start_client(String.t() | keyword() | map(), keyword() | map()) ::
          DynamicSupervisor.on_start_child()
  def start_client(url_or_config, opts \\ []),
    do: :ws_port_client_sup.start_client(url_or_config, opts)

  @doc """
  Stops a client gracefully (its connection is closed with 1000); it is not
  restarted. `{:error, :not_found}` when `pid` is not a client here. As with
  `WsPort.Client.close/1`, frames delivered to the client but not yet
  handled are dropped: the stop does not wait behind a backlog.
  """
  @spec stop_client(pid()) :: :ok | {:error, :not_found}
  def stop_client(pid), do: :ws_port_client_sup.stop_client(pid)

  @doc "As `stop_client/1` in the supervisor `sup`."
  @spec stop_client(Supervisor.supervisor(), pid()) :: :ok | {:error, :not_found}
  def stop_client(sup, pid), do: :ws_port_client_sup.stop_client(sup, pid)

  @doc "The pids of the running clients."
  @spec list_clients(Supervisor.supervisor()) :: [pid()]
  def list_clients(sup \\ :ws_port_client_sup), do: :ws_port_client_sup.list_clients(sup)

  @doc """
  Sends `frame` through the healthiest connected client, failing over to the
  next one when a send fails.

  Options:

    * `:client_discovery` - a function returning client pids, on any node
      (default: `list_clients/1` of `:supervisor`), e.g.
      `fn -> :pg.get_members(:ws_pool) end`.
    * `:max_attempts` - clients tried at most (default 3).
    * `:timeout` - ms for each health answer and each send (default 1000).
    * `:supervisor` - for the default discovery.

  Another option, or a bad value, is `{:error, {:bad_option, name, value}}`.

  Clients are ranked by heartbeat misses in a row, then errors, then last
  round-trip time. Returns `{:error, :no_connections}` when no client took
  the frame. A frame no client may send is its own error, without a
  failover: `{:error, {:bad_frame, frame}}` (checked before any client is
  asked), `{:error, {:invalid_utf8, offset}}`, `{:error, {:too_large, size,
  125}}` (a ping or pong payload over 125 bytes).
  """
  @spec send_balanced(WsPort.Client.frame() | [WsPort.Client.frame()], keyword() | map()) ::
          :ok
          | {:error,
             :no_connections
             | {:bad_frame, term()}
             | {:bad_option, term(), term()}
             | :ws_port.send_error()}
  def send_balanced(frame, opts \\ []), do: :ws_port_client_sup.send_balanced(frame, opts)
end
