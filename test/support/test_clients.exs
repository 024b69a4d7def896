defmodule WsPort.Test.Clients do
  @moduledoc """
  Callback modules used by the client, supervisor and multi-node tests.
  Their object code is kept (`binaries/0`) so the multi-node test can load
  them on peer nodes.
  """

  @doc "`[{module, binary}]` of the modules defined in this file."
  def binaries, do: :persistent_term.get({__MODULE__, :binaries}, [])

  @doc false
  def keep(mod, bin) do
    :persistent_term.put({__MODULE__, :binaries}, [{mod, bin} | binaries()])
  end
end

{:module, mod, bin, _} =
  defmodule WsPort.Test.ReportClient do
    @moduledoc """
    Reports everything to `arg[:test]` as `{:client, event, self(), data}`;
    sends `arg[:subscribe]` (a text) after every connect; `"crash"` makes
    `handle_frame` raise; `arg[:sleep]` ms of sleep in every `handle_frame`;
    `arg[:on_disconnect]` (`:stop`) is what `handle_disconnect` does;
    `arg[:report_handled]` reports the frames handled when it terminates.
    """
    use WsPort.Client

    @impl true
    def init(arg), do: {:ok, Map.new(arg)}

    @impl true
    def handle_connect(info, state) do
      report(state, :connect, info)

      case state[:subscribe] do
        nil -> {:ok, state}
        text -> {:reply, [{:text, text}], state}
      end
    end

    @impl true
    def handle_frame({:text, "crash"}, _state), do: raise("crash requested")

    def handle_frame(frame, state) do
      if ms = state[:sleep], do: Process.sleep(ms)
      if state[:report_frames] != false, do: report(state, :frame, frame)
      {:ok, Map.update(state, :frames, 1, &(&1 + 1))}
    end

    @impl true
    def handle_disconnect(info, state) do
      report(state, :disconnect, info)

      case state[:on_disconnect] do
        :stop -> {:stop, :normal, state}
        _ -> {:ok, state}
      end
    end

    @impl true
    def handle_call(:frames, _from, state), do: {:reply, Map.get(state, :frames, 0), state}
    def handle_call({:send, text}, _from, state), do: {:reply, :sent, [{:text, text}], state}
    def handle_call(:later, from, state), do: {:noreply, Map.put(state, :later, from)}

    @impl true
    def handle_cast({:send, text}, state), do: {:reply, {:text, text}, state}

    @impl true
    def handle_info({:answer_later, reply}, state) do
      WsPort.Client.reply(state.later, reply)
      {:ok, state}
    end

    def handle_info(_msg, state), do: {:ok, state}

    @impl true
    def terminate(reason, state) do
      if state[:report_handled], do: report(state, :handled, Map.get(state, :frames, 0))
      report(state, :terminate, reason)
    end

    defp report(state, event, data) do
      if test = state[:test], do: send(test, {:client, event, self(), data})
      :ok
    end
  end

WsPort.Test.Clients.keep(mod, bin)

{:module, mod, bin, _} =
  defmodule WsPort.Test.PeerHelper do
    @moduledoc "Runs on peer nodes of the multi-node test."

    @doc """
    Starts a `:pg` scope and a client supervisor (unlinked, held by a
    process that waits forever) and one client of `url` that joins `group`
    while connected and reports to `test`. Returns the client pid.
    """
    def start_pool(scope, group, url, test) do
      parent = self()

      holder =
        spawn(fn ->
          {:ok, _} = :pg.start(scope)
          {:ok, sup} = :ws_port_client_sup.start_link(%{name: :ws_port_client_sup})
          send(parent, {:sup, sup})
          Process.sleep(:infinity)
        end)

      receive do
        {:sup, _} -> :ok
      after
        10_000 -> raise "no supervisor on #{node()}"
      end

      {:ok, client} =
        :ws_port_client_sup.start_client(url, %{
          module: WsPort.Test.ReportClient,
          init_arg: [test: test],
          retry: %{delay: 100, max_delay: 300},
          on_connect: {:pg, :join, [scope, group]},
          on_disconnect: {:pg, :leave, [scope, group]}
        })

      {holder, client}
    end
  end

WsPort.Test.Clients.keep(mod, bin)
