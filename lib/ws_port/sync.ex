defmodule WsPort.Sync do
  @moduledoc """
  A synchronous interface for scripts and tests: connect, send, and wait for
  the next message with a timeout (the Elixir face of `:ws_port_sync`).

      {:ok, conn} = WsPort.Sync.connect("ws://127.0.0.1:8080/echo")
      :ok = WsPort.Sync.send(conn, "hello")
      {:ok, {:text, "hello"}} = WsPort.Sync.receive_frame(conn, 5000)
      :ok = WsPort.Sync.close(conn)

  The connection is passive: `receive_frame/2` asks the port program for one
  message at a time, so nothing piles up in the caller's mailbox. Only the
  process that connected may call `receive_frame/2`.
  """

  @doc """
  Opens a connection and waits for the handshake. Options are those of
  `WsPort.connect/2` except `:active` and `:await` (given, they are
  `{:error, {:bad_option, name, value}}`); `:retry` defaults to `false`.
  """
  @spec connect(String.t() | URI.t(), WsPort.connect_opts()) :: {:ok, term()} | {:error, term()}
  def connect(url, opts \\ []), do: :ws_port_sync.connect(url, opts)

  @doc "Sends `{:text, iodata}`, `{:binary, iodata}`, `{:ping, iodata}` or a binary (as text)."
  @spec send(term(), binary() | {:text | :binary | :ping | :pong, iodata()}) ::
          :ok | {:error, :ws_port.send_error()}
  def send(conn, frame), do: :ws_port_sync.send(conn, frame)

  @doc """
  Waits up to `timeout` ms for the next message: `{:ok, {:text | :binary,
  data}}`, `{:error, :timeout}` or `{:error, {:closed, reason}}`. A
  timeout that is not `:infinity` nor an integer >= 0 raises
  `ArgumentError`.
  """
  @spec receive_frame(term(), timeout()) ::
          {:ok, {:text | :binary, binary()}} | {:error, :timeout | {:closed, term()}}
  def receive_frame(conn, timeout \\ 5000), do: :ws_port_sync.receive_frame(conn, timeout)

  @doc "Closes the connection and drops its messages left in the mailbox."
  @spec close(term()) :: :ok
  def close(conn), do: :ws_port_sync.close(conn)
end
