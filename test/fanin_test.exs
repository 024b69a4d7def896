Code.require_file("support/peer.exs", __DIR__)

defmodule WsPort.FaninTest do
  @moduledoc """
  Many connections, each receiving small messages one at a time (issue 16):
  the port program wakes up for one small message per connection, writes
  the events for the BEAM once per loop turn (many connections' messages in
  one packet) and, after a short read, waits for the loop to report the
  socket readable again instead of reading until EAGAIN (plain TCP; over
  TLS after a small record with nothing buffered in OpenSSL).

  python3-websockets `/seq?n=N&interval_ms=I` sends N numbered text
  messages "CONNID:SEQ", one every I ms: every connection must get all of
  its own, in order, none twice, none of another connection, over ws and
  wss, with one owner process per connection and with one owner for all,
  on one dedicated driver. The peer's SEQ lines say what it wrote.
  """
  use ExUnit.Case, async: false

  alias WsPort.Test.{Certs, Peer}

  @moduletag timeout: 300_000
  # liveness bound, not a performance threshold
  @wait 60_000
  @conns 150
  @n 40

  setup_all do
    {:ok, _} = Application.ensure_all_started(:ws_port)
    certs = Certs.make!()
    on_exit(fn -> Certs.cleanup(certs) end)

    peers =
      for scheme <- [:ws, :wss], into: %{} do
        opts = if scheme == :wss, do: [tls: {certs.server.cert, certs.server.key}], else: []
        pid = Peer.start!(:python, opts)
        on_exit(fn -> Peer.stop(pid) end)
        {scheme, pid}
      end

    %{certs: certs, peers: peers}
  end

  defp target(ctx, scheme) do
    peer = Map.fetch!(ctx.peers, scheme)
    opts = if scheme == :wss, do: %{tls: %{cacertfile: ctx.certs.ca.cert}}, else: %{}
    {"#{scheme}://127.0.0.1:#{Peer.port(peer)}/seq?n=#{@n}&interval_ms=5", opts, peer}
  end

  # The messages one connection got, in order: "CONNID:SEQ" -> {connid, seq}.
  defp parse(msgs) do
    for m <- msgs do
      [id, seq] = String.split(m, ":")
      {id, String.to_integer(seq)}
    end
  end

  defp check_connection(msgs) do
    parsed = parse(msgs)
    ids = parsed |> Enum.map(&elem(&1, 0)) |> Enum.uniq()
    assert [_one_id] = ids, "messages of more than one connection: #{inspect(ids)}"
    assert Enum.map(parsed, &elem(&1, 1)) == Enum.to_list(0..(@n - 1))
    hd(ids)
  end

  defp owner_loop(conn, acc) do
    receive do
      {:ws_port, ^conn, {:text, t}} ->
        acc = [t | acc]
        if length(acc) == @n, do: Enum.reverse(acc), else: owner_loop(conn, acc)

      {:ws_port_closed, ^conn, reason} ->
        {:closed, reason, Enum.reverse(acc)}
    after
      @wait -> {:timeout, Enum.reverse(acc)}
    end
  end

  for scheme <- [:ws, :wss] do
    @tag scheme: scheme
    test "#{scheme}: #{@conns} connections, one owner process each, every message in order",
         ctx do
      {url, opts, peer} = target(ctx, ctx.scheme)
      {:ok, driver} = :ws_port_driver.start_link()
      parent = self()

      owners =
        for _ <- 1..@conns do
          spawn_link(fn ->
            {:ok, conn} = :ws_port.connect(url, Map.merge(opts, %{driver: driver}))
            send(parent, {:got, self(), owner_loop(conn, [])})
            :ok = :ws_port.close(conn)
          end)
        end

      results =
        for o <- owners do
          receive do
            {:got, ^o, r} -> r
          after
            @wait * 2 -> flunk("an owner did not finish")
          end
        end

      ids = for r <- results, do: check_connection(r)
      assert length(Enum.uniq(ids)) == @conns
      peer_wrote_all(peer, ids)
      GenServer.stop(driver)
    end

    @tag scheme: scheme
    test "#{scheme}: #{@conns} connections held by one owner, every message in order", ctx do
      {url, opts, peer} = target(ctx, ctx.scheme)
      {:ok, driver} = :ws_port_driver.start_link()

      conns =
        for _ <- 1..@conns do
          {:ok, c} = :ws_port.connect(url, Map.merge(opts, %{driver: driver, await: false}))
          c
        end

      got = collect(Map.new(conns, &{&1, []}), @conns * @n)

      ids =
        for c <- conns do
          check_connection(Enum.reverse(Map.fetch!(got, c)))
        end

      assert length(Enum.uniq(ids)) == @conns
      peer_wrote_all(peer, ids)
      Enum.each(conns, &(:ok = :ws_port.close(&1)))
      GenServer.stop(driver)
    end
  end

  @burst 200

  for scheme <- [:ws, :wss] do
    @tag scheme: scheme
    test "#{scheme}: #{@conns} connections, each a burst of #{@burst} small messages at once",
         ctx do
      # many small frames (TLS: records) arriving together: after a short
      # read of one, more may wait in OpenSSL's read-ahead, not in the
      # socket, where no readiness would ever announce them
      peer = Map.fetch!(ctx.peers, ctx.scheme)
      opts = if ctx.scheme == :wss, do: %{tls: %{cacertfile: ctx.certs.ca.cert}}, else: %{}
      url = "#{ctx.scheme}://127.0.0.1:#{Peer.port(peer)}/send?n=#{@burst}&size=20&type=binary"
      {:ok, driver} = :ws_port_driver.start_link()

      conns =
        for _ <- 1..@conns do
          {:ok, c} = :ws_port.connect(url, Map.merge(opts, %{driver: driver, await: false}))
          c
        end

      got = collect_binary(Map.new(conns, &{&1, []}), @conns * @burst)

      for c <- conns do
        assert Enum.reverse(Map.fetch!(got, c)) ==
                 for(i <- 0..(@burst - 1), do: :binary.copy(<<rem(i, 256)>>, 20))
      end

      Enum.each(conns, &(:ok = :ws_port.close(&1)))
      GenServer.stop(driver)
    end
  end

  @big_burst 2000

  for scheme <- [:ws, :wss] do
    @tag scheme: scheme
    test "#{scheme}: a burst of #{@big_burst} small messages waiting in the socket, then silence",
         ctx do
      # The burst waits in the socket (no credit) before the port program
      # reads it. Over TLS it then reads many records per recv(2) and keeps
      # what OpenSSL has not taken yet in its socket BIO (about 70 KB here,
      # more than OpenSSL's read buffer): the socket announces nothing more,
      # and the server stays silent after its burst (no pings), so a reader
      # that stopped after a small record would never get the rest.
      peer = Map.fetch!(ctx.peers, ctx.scheme)
      opts = if ctx.scheme == :wss, do: %{tls: %{cacertfile: ctx.certs.ca.cert}}, else: %{}
      path = "/send?n=#{@big_burst}&size=20&type=binary&k="
      {:ok, driver} = :ws_port_driver.start_link()

      conns =
        for k <- 1..2 do
          url = "#{ctx.scheme}://127.0.0.1:#{Peer.port(peer)}#{path}#{k}"
          {:ok, c} = :ws_port.connect(url, Map.merge(opts, %{driver: driver, active: false}))
          Peer.await_line(peer, "SENT #{path}#{k}")
          c
        end

      Enum.each(conns, &(:ok = :ws_port.setopts(&1, active: true)))
      got = collect_binary(Map.new(conns, &{&1, []}), 2 * @big_burst)

      for c <- conns do
        assert Enum.reverse(Map.fetch!(got, c)) ==
                 for(i <- 0..(@big_burst - 1), do: :binary.copy(<<rem(i, 256)>>, 20))
      end

      Enum.each(conns, &(:ok = :ws_port.close(&1)))
      GenServer.stop(driver)
    end
  end

  defp collect_binary(acc, 0), do: acc

  defp collect_binary(acc, left) do
    receive do
      {:ws_port_up, _, _} ->
        collect_binary(acc, left)

      {:ws_port, c, {:binary, b}} ->
        collect_binary(Map.update!(acc, c, &[b | &1]), left - 1)

      {:ws_port_closed, _, reason} ->
        flunk("a connection closed: #{inspect(reason)}")
    after
      @wait -> flunk("#{left} messages missing")
    end
  end

  # the peer's own account: it wrote the last message of each of them
  defp peer_wrote_all(peer, ids) do
    Enum.each(ids, &Peer.await_line(peer, "SEQ #{&1} #{@n - 1}"))
  end

  defp collect(acc, 0), do: acc

  defp collect(acc, left) do
    receive do
      {:ws_port_up, _, _} ->
        collect(acc, left)

      {:ws_port, c, {:text, t}} ->
        collect(Map.update!(acc, c, &[t | &1]), left - 1)

      {:ws_port_closed, _, reason} ->
        flunk("a connection closed: #{inspect(reason)}")
    after
      @wait -> flunk("#{left} messages missing")
    end
  end
end
