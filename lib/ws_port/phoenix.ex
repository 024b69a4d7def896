defmodule WsPort.Phoenix do
  @moduledoc """
  A synchronous Phoenix Channels client for scripts, tests and simple
  services (the Elixir face of `:ws_port_phoenix`).

      {:ok, socket} = WsPort.Phoenix.connect("ws://localhost:4000/socket/websocket",
                        params: %{token: "T"})
      {:ok, _reply} = WsPort.Phoenix.join(socket, "room:lobby", %{})
      {:ok, reply} = WsPort.Phoenix.push(socket, "room:lobby", "new_msg", %{body: "hi"})
      {:ok, payload} = WsPort.Phoenix.await_message(socket, "room:lobby", "new_msg", 5000)
      # many pushes in flight, replies awaited later
      {:ok, ref} = WsPort.Phoenix.push_async(socket, "room:lobby", "new_msg", %{body: "again"})
      {:ok, reply} = WsPort.Phoenix.await_reply(ref)
      :ok = WsPort.Phoenix.leave(socket, "room:lobby")
      :ok = WsPort.Phoenix.disconnect(socket)

  The socket is a process linked to the caller. `connect/2` waits for the
  first handshake (a refused upgrade, e.g. HTTP 403 from a socket whose
  `connect/3` refused the params, is `{:error, {:http_status, 403,
  headers}}`), then the socket reconnects by itself with phoenix.js's
  backoff, sends heartbeats (one unanswered until the next drops and
  reopens the connection), rejoins every topic joined and not left after a
  reconnect, and rejoins a topic whose channel crashed (`phx_error`) after
  1, 2, 5, then 10 s. A refused join is returned, not retried.

  Payloads decode like Jason's: string keys, `nil` for null. A binary
  payload (Phoenix's binary frames, V2) is `{:binary, data}`, both ways.

  ## Options

  Those of `WsPort.connect/2` (`:headers`, `:tls` as a map or keyword list,
  `:retry`, `:retry_on`, `:connect_timeout`, ...), plus:

    * `:params` - connect params, sent in the query string
    * `:heartbeat_interval` - ms, default 30_000 (`:infinity`: none)
    * `:json` - the JSON codec: `:ws_port_json` (default), `Jason`,
      `Poison`, OTP 27's `:json` (payload nulls are then `:null`), or any
      module with `encode/1` and `decode/1`
    * `:serializer` - `:v2` (default) or `:v1`; `vsn` is added to the URL
      unless it has one
    * `:rejoin_after` - `fn try -> ms end` after `phx_error`
    * `:max_buffer` - server messages kept for `await_message/4` before
      the socket stops reading the connection (default 10_000)

  Errors name the problem: `{:bad_topic, t}`, `{:bad_event, e}`,
  `{:bad_timeout, t}` (not `:infinity` nor an integer 0..4294967295 ms),
  `{:already_joined, topic}`,
  `{:not_joined, topic}`, `:timeout`, `:disconnected` (the socket dropped
  before the reply came), `{:topic_closed, :crashed | :closed}`,
  `{:closed, reason}` (`{:closed, :noproc}`: the socket process had ended,
  e.g. after `disconnect/1`).
  """

  @type socket :: pid()

  @typedoc """
  One option of `connect/2`: those of `WsPort.connect/2` (`t:WsPort.option/0`)
  and the Phoenix ones in the moduledoc (dialyzer does not catch a
  misspelled name with so many options, see `t:WsPort.option/0`).
  """
  @type option ::
          WsPort.option()
          | {:params, map() | keyword()}
          | {:heartbeat_interval, pos_integer() | :infinity}
          | {:json, module()}
          | {:serializer, :v1 | :v2}
          | {:rejoin_after, (pos_integer() -> non_neg_integer())}
          | {:join_timeout, pos_integer()}
          | {:max_buffer, pos_integer()}
          | {:null, term()}

  @doc "Connects and waits for the first handshake. See the moduledoc for the options."
  @spec connect(String.t() | URI.t(), [option()] | map()) :: {:ok, socket()} | {:error, term()}
  def connect(url, opts \\ [])

  # a list stays a list: :ws_port_phoenix refuses a key given twice
  def connect(url, opts) when is_list(opts) do
    opts = if List.keymember?(opts, :null, 0), do: opts, else: opts ++ [null: nil]
    :ws_port_phoenix.connect(url, opts)
  end

  def connect(url, opts) when is_map(opts),
    do: :ws_port_phoenix.connect(url, Map.put_new(opts, :null, nil))

  # {:error, {:bad_option, :opts, opts}}
  def connect(url, opts), do: :ws_port_phoenix.connect(url, opts)

  @doc "Joins `topic`: `{:ok, reply}`, `{:error, reply}` (refused) or `{:error, :timeout}`."
  @spec join(socket(), String.t(), term(), timeout()) :: {:ok, term()} | {:error, term()}
  def join(socket, topic, params \\ %{}, timeout \\ 5000),
    do: :ws_port_phoenix.join(socket, topic, params, timeout)

  @doc "Pushes `event` to a joined topic and waits for the reply."
  @spec push(socket(), String.t(), String.t(), term(), timeout()) ::
          {:ok, term()} | {:error, term()}
  def push(socket, topic, event, payload, timeout \\ 5000),
    do: :ws_port_phoenix.push(socket, topic, event, payload, timeout)

  @doc """
  Pushes `event` to a joined topic without waiting: `{:ok, ref}` at once;
  `await_reply/2` with `ref` (in the same process) returns what `push/5`
  would have. Pushes go out in the order of the calls; many can be in
  flight. The reply comes to the caller as a message (as with
  `GenServer.send_request/2`'s): one never awaited stays in its mailbox.
  """
  @spec push_async(socket(), String.t(), String.t(), term(), timeout()) ::
          {:ok, :ws_port_phoenix.push_ref()} | {:error, term()}
  def push_async(socket, topic, event, payload, timeout \\ 5000),
    do: :ws_port_phoenix.push_async(socket, topic, event, payload, timeout)

  @doc """
  The reply to `push_async/5`: `{:ok, reply}`, `{:error, reply}`,
  `{:error, :timeout}` (the push's timeout passed), another error of
  `push/5`, or `{:error, {:closed, reason}}` when the socket ended first.
  `timeout` bounds this wait; past it the reply is dropped.
  """
  @spec await_reply(:ws_port_phoenix.push_ref(), timeout()) :: {:ok, term()} | {:error, term()}
  def await_reply(ref, timeout \\ :infinity), do: :ws_port_phoenix.await_reply(ref, timeout)

  @doc "Waits for the next server push or broadcast of `event` on `topic` (in order)."
  @spec await_message(socket(), String.t(), String.t(), timeout()) ::
          {:ok, term()} | {:error, term()}
  def await_message(socket, topic, event, timeout \\ 5000),
    do: :ws_port_phoenix.await_message(socket, topic, event, timeout)

  @doc "Leaves `topic`; it is not rejoined any more."
  @spec leave(socket(), String.t()) :: :ok | {:error, term()}
  def leave(socket, topic), do: :ws_port_phoenix.leave(socket, topic)

  @doc "Closes the socket and ends its process; `:ok` also when it has ended already."
  @spec disconnect(socket()) :: :ok
  def disconnect(socket), do: :ws_port_phoenix.disconnect(socket)

  @doc """
  Topics and their state, counters (`:bad_input`, `:rejoins`, `:reconnects`, ...)
  and `:connection`, the ws_port connection underneath (`WsPort.info/1` on it
  tells compression, bytes and round-trip time).
  """
  @spec info(socket()) :: map()
  def info(socket), do: :ws_port_phoenix.info(socket)
end
