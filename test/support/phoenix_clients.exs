defmodule WsPort.Test.PhoenixReportClient do
  @moduledoc """
  A WsPort.Phoenix.Client that reports every callback to `arg[:test]` as
  `{:phx, event, data}`, joins `arg[:joins]` in init, pushes on
  `{:push, topic, event, payload}` casts (reporting the ref), joins and
  leaves on casts, and sleeps `arg[:sleep]` ms in every handle_message.
  """
  use WsPort.Phoenix.Client

  alias WsPort.Phoenix.Client

  @impl true
  def init(arg) do
    arg = Map.new(arg)
    for {topic, params} <- Map.get(arg, :joins, []), do: :ok = Client.join(topic, params)
    {:ok, arg}
  end

  @impl true
  def handle_connect(state), do: report(state, :connect, nil)

  @impl true
  def handle_disconnect(reason, state), do: report(state, :disconnect, reason)

  @impl true
  def handle_join(topic, result, state), do: report(state, :join, {topic, result})

  @impl true
  def handle_message(topic, event, payload, state) do
    if ms = state[:sleep], do: Process.sleep(ms)
    report(state, :message, {topic, event, payload})
  end

  @impl true
  def handle_reply(ref, reply, state), do: report(state, :reply, {ref, reply})

  @impl true
  def handle_topic_close(topic, reason, state), do: report(state, :topic_close, {topic, reason})

  @impl true
  def handle_leave(topic, state), do: report(state, :leave, topic)

  @impl true
  def handle_cast({:push, topic, event, payload}, state) do
    report(state, :pushed, Client.push(topic, event, payload))
  end

  def handle_cast({:join, topic, params}, state),
    do: report(state, :join_called, Client.join(topic, params))

  def handle_cast({:leave, topic}, state), do: report(state, :leave_called, Client.leave(topic))

  @impl true
  def handle_call(:state, _from, state), do: {:reply, state, state}

  defp report(state, event, data) do
    send(state.test, {:phx, event, data})
    {:ok, state}
  end
end
