Code.require_file("support/peer.exs", __DIR__)

defmodule WsPort.AttemptCapTest do
  @moduledoc """
  The port program keeps at most 256 connection attempts in flight and the
  rest wait, in order, with their connect_timeout running (issue 16, the
  reconnect storm). More attempts than that on one driver, at once:

    * against a listener that accepts TCP and never answers TLS, every
      attempt ends with `timeout`, those that waited for a slot as well as
      those in flight, and each frees its slot: a connection opened
      afterwards on the same driver comes up;
    * closed by their owners while waiting or in flight: nothing more
      comes for them, and the slots are free again afterwards;
    * against a real wss peer (python3-websockets), every one comes up.
  """
  use ExUnit.Case, async: false

  alias WsPort.Test.{Certs, Peer}

  @moduletag timeout: 300_000
  # more than the cap (256)
  @n 600
  # liveness bound, not a performance threshold
  @wait 120_000

  setup_all do
    {:ok, _} = Application.ensure_all_started(:ws_port)
    certs = Certs.make!()
    on_exit(fn -> Certs.cleanup(certs) end)
    peer = Peer.start!(:python, tls: {certs.server.cert, certs.server.key})
    on_exit(fn -> Peer.stop(peer) end)
    %{certs: certs, peer: peer}
  end

  setup ctx do
    {:ok, driver} = :ws_port_driver.start_link()
    opts = %{driver: driver, await: false, tls: %{cacertfile: ctx.certs.ca.cert}}
    url = "wss://localhost:#{Peer.port(ctx.peer)}/"
    Map.merge(ctx, %{driver: driver, opts: opts, url: url})
  end

  # A TCP listener that never accepts: the kernel completes the TCP
  # handshakes (backlog), the ClientHellos are never read.
  defp silent_listener do
    {:ok, l} = :gen_tcp.listen(0, [:binary, ip: {127, 0, 0, 1}, backlog: 1024, active: false])
    {:ok, port} = :inet.port(l)
    {l, port}
  end

  defp await_closed(conns) do
    for c <- conns do
      receive do
        {:ws_port_closed, ^c, reason} -> reason
      after
        @wait -> flunk("no closed event for #{inspect(c)} within #{@wait} ms")
      end
    end
  end

  defp await_up(conns) do
    for c <- conns do
      receive do
        {:ws_port_up, ^c, _info} -> :up
        {:ws_port_closed, ^c, reason} -> {:closed, reason}
      after
        @wait -> flunk("#{inspect(c)} not up within #{@wait} ms")
      end
    end
  end

  # with every slot leaked it would wait for its connect_timeout
  defp one_more_comes_up(ctx) do
    {:ok, c} =
      :ws_port.connect(ctx.url, Map.merge(ctx.opts, %{retry: false, connect_timeout: 60_000}))

    assert await_up([c]) == [:up]
    :ok = :ws_port.close(c)
  end

  test "#{@n} attempts at a silent server all end with timeout; the slots are free after",
       ctx do
    {l, port} = silent_listener()

    conns =
      for _ <- 1..@n do
        {:ok, c} =
          :ws_port.connect(
            "wss://127.0.0.1:#{port}/",
            Map.merge(ctx.opts, %{retry: false, connect_timeout: 1_000})
          )

        c
      end

    reasons = await_closed(conns)
    assert Enum.frequencies(reasons) == %{timeout: @n}
    :gen_tcp.close(l)
    one_more_comes_up(ctx)
  end

  test "#{@n} attempts closed by their owners while waiting or in flight", ctx do
    {l, port} = silent_listener()

    conns =
      for _ <- 1..@n do
        {:ok, c} =
          :ws_port.connect(
            "wss://127.0.0.1:#{port}/",
            Map.merge(ctx.opts, %{connect_timeout: 60_000})
          )

        c
      end

    for c <- conns, do: :ok = :ws_port.close(c)
    :gen_tcp.close(l)
    one_more_comes_up(ctx)
    # the owner gets no message for a connection it closed
    stray =
      for c <- conns do
        receive do
          {tag, ^c, _} = m when tag in [:ws_port_closed, :ws_port_up] -> m
        after
          0 -> nil
        end
      end

    assert Enum.reject(stray, &is_nil/1) == []
  end

  test "#{@n} wss connections opened at once all come up", ctx do
    conns =
      for _ <- 1..@n do
        {:ok, c} = :ws_port.connect(ctx.url, Map.put(ctx.opts, :connect_timeout, 60_000))
        c
      end

    assert Enum.frequencies(await_up(conns)) == %{up: @n}
    for c <- conns, do: :ok = :ws_port.close(c)
  end
end
