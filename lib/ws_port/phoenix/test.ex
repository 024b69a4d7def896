defmodule WsPort.Phoenix.Test do
  @moduledoc """
  Test utilities for `WsPort.Phoenix.Client` modules, in the spirit of
  `Phoenix.ChannelTest` and Slipstream's `SocketTest`: the test process
  plays the server, so a client module is tested with no server at all.

      test "joins and greets" do
        {:ok, client} = WsPort.Phoenix.Test.start_client(MyApp.RoomClient, init_arg: [user: "ann"])
        :ok = WsPort.Phoenix.Test.accept_connect(client)

        assert %{"user" => "ann"} =
                 WsPort.Phoenix.Test.assert_join(client, "room:lobby", :_, {:ok, %{}})

        ref = WsPort.Phoenix.Test.assert_push(client, "room:lobby", "new_msg", %{"body" => "hi"})
        :ok = WsPort.Phoenix.Test.reply(client, "room:lobby", ref, {:ok, %{"id" => 1}})

        :ok = WsPort.Phoenix.Test.push(client, "room:lobby", "new_msg", %{"body" => "yo"})
        :ok = WsPort.Phoenix.Test.refute_push(client, "room:lobby", "new_msg", 100)

        # the channel crashes: the client rejoins by itself
        :ok = WsPort.Phoenix.Test.crash_channel(client, "room:lobby")
        WsPort.Phoenix.Test.assert_join(client, "room:lobby", :_, {:ok, %{}})

        # the socket drops: the client rejoins after the reconnect
        :ok = WsPort.Phoenix.Test.disconnect(client, :econnreset)
        :ok = WsPort.Phoenix.Test.accept_connect(client)
        WsPort.Phoenix.Test.assert_join(client, "room:lobby", :_, {:ok, %{}})
      end

  The client (linked to the test process, which must make every call here)
  runs with `:ws_port_phoenix_test_transport` in place of the port program:
  what it sends comes to the test process, decoded as the server would;
  what the test sends reaches the client as from the server. Payloads are
  as the client sees them (string keys, `nil`); `:_` as params or payload
  matches anything, and the value seen is returned. Heartbeats are off
  unless `:heartbeat_interval` is given. A failed assertion raises
  `ExUnit.AssertionError`. The Erlang functions are in
  `:ws_port_phoenix_test` (EUnit: they raise `{:ws_port_phoenix_test,
  message}` errors).
  """

  @doc "Starts a client of `module` whose server is the caller (options as `WsPort.Phoenix.Client`; `:url` optional)."
  @spec start_client(module(), keyword()) :: {:ok, pid()} | {:error, term()}
  def start_client(module, opts \\ []),
    do: :ws_port_phoenix_test.start_client(module, Map.new(opts))

  @doc "Completes the client's (re)connection: `handle_connect` runs and its joins are sent."
  @spec accept_connect(pid(), timeout()) :: :ok
  def accept_connect(client, timeout \\ 1000),
    do: wrap(fn -> :ws_port_phoenix_test.accept_connect(client, timeout) end)

  @doc "Asserts the client joins `topic` with `params` (`:_`: any) and answers `{:ok, resp}` or `{:error, resp}`; returns the params."
  @spec assert_join(pid(), String.t(), term(), {:ok | :error, term()}, timeout()) :: term()
  def assert_join(client, topic, params, reply, timeout \\ 1000),
    do:
      wrap(fn -> :ws_port_phoenix_test.assert_join(client, topic, any(params), reply, timeout) end)

  @doc "Asserts the client pushes `event` with `payload` (`:_`: any) on `topic`; returns the ref for `reply/4`."
  @spec assert_push(pid(), String.t(), String.t(), term(), timeout()) :: String.t()
  def assert_push(client, topic, event, payload, timeout \\ 1000),
    do:
      wrap(fn ->
        :ws_port_phoenix_test.assert_push(client, topic, event, any(payload), timeout)
      end)

  @doc """
  Asserts the client pushes `event` on `topic` with a payload matching
  `pattern` (variables in it are bound, pins work); returns the ref for
  `reply/4`. A macro: `require WsPort.Phoenix.Test` (or `import`) first.

      ref = assert_push_match(client, "room:1", "new_msg", %{"body" => body})
      assert body =~ "hi"
  """
  defmacro assert_push_match(client, topic, event, pattern, timeout \\ 1000) do
    quote do
      {ref, payload} =
        WsPort.Phoenix.Test.__next_push__(
          unquote(client),
          unquote(topic),
          unquote(event),
          unquote(timeout)
        )

      unless match?(unquote(unbind(pattern)), payload) do
        WsPort.Phoenix.Test.__fail__(
          "expected #{unquote(event)} on #{unquote(topic)} matching " <>
            unquote(Macro.to_string(pattern)) <> ", got #{inspect(payload)}"
        )
      end

      unquote(pattern) = payload
      ref
    end
  end

  # the pattern for the check, with its variables (not its pins) made `_`,
  # so that only the binding after it binds them
  defp unbind({:^, _, _} = pin), do: pin

  defp unbind({name, meta, ctx} = var) when is_atom(name) and is_atom(ctx) do
    if String.starts_with?(Atom.to_string(name), "_"), do: var, else: {:_, meta, ctx}
  end

  defp unbind({call, meta, args}) when is_list(args),
    do: {unbind(call), meta, Enum.map(args, &unbind/1)}

  defp unbind({left, right}), do: {unbind(left), unbind(right)}
  defp unbind(list) when is_list(list), do: Enum.map(list, &unbind/1)
  defp unbind(other), do: other

  @doc false
  def __next_push__(client, topic, event, timeout),
    do: wrap(fn -> :ws_port_phoenix_test.next_push(client, topic, event, timeout) end)

  @doc false
  def __fail__(message), do: wrap(fn -> :erlang.error({:ws_port_phoenix_test, message}) end)

  @doc "Asserts the client does not push `event` on `topic` within `timeout` ms."
  @spec refute_push(pid(), String.t(), String.t(), timeout()) :: :ok
  def refute_push(client, topic, event, timeout \\ 100),
    do: wrap(fn -> :ws_port_phoenix_test.refute_push(client, topic, event, timeout) end)

  @doc "Asserts the client leaves `topic`, and answers as Phoenix does."
  @spec assert_leave(pid(), String.t(), timeout()) :: :ok
  def assert_leave(client, topic, timeout \\ 1000),
    do: wrap(fn -> :ws_port_phoenix_test.assert_leave(client, topic, timeout) end)

  @doc "Answers the push `ref` with `{:ok, resp}` or `{:error, resp}`."
  @spec reply(pid(), String.t(), String.t(), {:ok | :error, term()}) :: :ok
  def reply(client, topic, ref, reply),
    do: wrap(fn -> :ws_port_phoenix_test.reply(client, topic, ref, reply) end)

  @doc "A push from the channel of `topic` (`handle_message/4` runs)."
  @spec push(pid(), String.t(), String.t(), term()) :: :ok
  def push(client, topic, event, payload),
    do: wrap(fn -> :ws_port_phoenix_test.push(client, topic, event, payload) end)

  @doc "A broadcast on `topic` (`handle_message/4` runs)."
  @spec broadcast(pid(), String.t(), String.t(), term()) :: :ok
  def broadcast(client, topic, event, payload),
    do: wrap(fn -> :ws_port_phoenix_test.broadcast(client, topic, event, payload) end)

  @doc "The channel of `topic` crashes (`phx_error`): the client rejoins it."
  @spec crash_channel(pid(), String.t()) :: :ok
  def crash_channel(client, topic),
    do: wrap(fn -> :ws_port_phoenix_test.crash_channel(client, topic) end)

  @doc "The server closes the channel of `topic` (`phx_close`)."
  @spec close_channel(pid(), String.t()) :: :ok
  def close_channel(client, topic),
    do: wrap(fn -> :ws_port_phoenix_test.close_channel(client, topic) end)

  @doc "The connection drops with `reason`; `accept_connect/1` reconnects it."
  @spec disconnect(pid(), term()) :: :ok
  def disconnect(client, reason \\ :econnreset),
    do: wrap(fn -> :ws_port_phoenix_test.disconnect(client, reason) end)

  @doc "The connection ends for good with `reason`: the client exits with `{:closed, reason}`."
  @spec close(pid(), term()) :: :ok
  def close(client, reason), do: wrap(fn -> :ws_port_phoenix_test.close(client, reason) end)

  defp any(:_), do: :_
  defp any(value), do: value

  defp wrap(fun) do
    fun.()
  rescue
    e in ErlangError ->
      case e.original do
        {:ws_port_phoenix_test, message} ->
          # ExUnit is loaded when tests run; named through a variable so
          # that compiling the library does not depend on it
          assertion = Module.concat(ExUnit, AssertionError)
          reraise assertion, [message: message], __STACKTRACE__

        _ ->
          reraise e, __STACKTRACE__
      end
  end
end
