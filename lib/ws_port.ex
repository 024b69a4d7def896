defmodule WsPort do
  @moduledoc """
  WebSocket client connections whose network, TLS and framing run in a C port
  program (`priv/ws_port`). A thin facade over the Erlang module `:ws_port`;
  the API mirrors `:gen_tcp` and `:ssl`.

  ## Example

      {:ok, conn} = WsPort.connect("wss://example.com/socket", headers: [{"authorization", "Bearer x"}])
      :ok = WsPort.send_text(conn, "hello")

      receive do
        {:ws_port, ^conn, {:text, reply}} -> reply
      end

      :ok = WsPort.close(conn)

  ## Messages to the owner

  A connection belongs to the process that opened it (see
  `controlling_process/2`), which gets:

    * `{:ws_port, conn, {:text, data}}` and `{:ws_port, conn, {:binary, data}}`:
      one whole message, while the connection is active.
    * `{:ws_port_passive, conn}`: the credit given with `active: n` is used
      up; nothing more is delivered (nor read from the socket) until
      `setopts/2`.
    * `{:ws_port_pong, conn, rtt_micros}`: the answer to a ping.
    * `{:ws_port_closed, conn, reason}`: the connection is gone for good and
      will not be retried any more (a failure not in `:retry_on`, retries
      exhausted, `retry: false`, or `:retry_fun` returned `:stop`); `reason`
      is the last failure's, e.g. `{:remote, code, text}`, `:eof`,
      `:idle_timeout`, `{:http_status, 401, headers}`,
      `{:protocol_error, code, detail}` (see `docs/protocol.md`). Not sent
      after `close/1`.
    * `{:ws_port_down, conn, reason, info}` then, once it is back,
      `{:ws_port_up, conn, info}` (same handle): the connection was lost (or
      an attempt failed) and will be tried again. `info` is
      `%{attempt: pos_integer, delay_ms: non_neg_integer | :manual,
      unsent_bytes: non_neg_integer}`: the failed attempt's number since the
      last `:ws_port_up`, the delay before the next try (the one `:retry_fun`
      chose; `:manual` with `retry: [manual: true]`, then the owner answers
      with `reconnect/2` or `close/1`), and the bytes lost with the socket.
      When the port program died and was restarted: `{:ws_port_down, conn,
      {:port_exit, status}, %{attempt: 1, delay_ms: 0, unsent_bytes: 0}}`.
      Sends in between return `{:error, :not_connected}` unless `:send_queue`
      is set.
    * `{:ws_port_up, conn, info}` after every `:ws_port_down`, and for the
      first handshake when `await: false` was given to `connect/2`.
    * `{:ws_port_error, conn, {what, detail}}`: the port program refused a
      command for this connection (e.g. `:not_connected`).
  """

  @typedoc "A connection handle (opaque)."
  @type conn :: :ws_port.conn()

  @typedoc "A message to send."
  @type message :: {:text | :binary | :ping | :pong, iodata()}

  @typedoc "A request header's name or value."
  @type header_part :: String.t() | charlist() | atom()

  @typedoc "One key of `connect/2`'s `:tls` option (see `connect/2`)."
  @type tls_option ::
          {:verify, :verify_peer | :verify_none}
          | {:cacertfile, Path.t()}
          | {:certfile, Path.t()}
          | {:keyfile, Path.t()}
          | {:server_name, String.t() | charlist()}
          | {:server_name_indication, :disable}
          | {:pins, [String.t() | charlist()]}
          | {:cacerts, [binary()]}
          | {:versions, [:"tlsv1.2" | :"tlsv1.3"]}
          | {:ciphers, String.t() | charlist()}
          | {:ciphersuites, String.t() | charlist()}
          | {:cert, binary() | [binary()]}
          | {:key,
             binary()
             | {:RSAPrivateKey | :ECPrivateKey | :PrivateKeyInfo, binary()}
             | (() -> binary() | {:RSAPrivateKey | :ECPrivateKey | :PrivateKeyInfo, binary()})}
          | {:password, String.t() | charlist() | (() -> String.t() | charlist())}
          | {:reuse_sessions, boolean()}

  @typedoc "One key of `connect/2`'s `:retry` option (see `connect/2`)."
  @type retry_option ::
          {:max_retries, non_neg_integer() | :infinity}
          | {:delay, non_neg_integer()}
          | {:max_delay, non_neg_integer()}
          | {:backoff_factor, number()}
          | {:jitter, :full | :equal | number()}
          | {:jitter_fraction, :full | :equal | number()}
          | {:manual, boolean()}

  @typedoc "One key of `connect/2`'s `:compress` option (see `connect/2`)."
  @type compress_option ::
          {:client_max_window_bits, true | 9..15}
          | {:server_max_window_bits, 8..15}
          | {:client_no_context_takeover, boolean()}
          | {:server_no_context_takeover, boolean()}
          | {:level, 0..9}
          | {:mem_level, 1..9}
          | {:threshold, non_neg_integer()}

  @typedoc """
  A proxy for `connect/2`'s `:proxy` option (see the README's options table):
  a URL, a map, `:system`, `:none` (or `false`), or a zero-arity fun
  returning one of these.
  """
  @type proxy ::
          String.t()
          | charlist()
          | :system
          | :none
          | false
          | (() -> proxy())
          | %{
              required(:type) => :http | :socks5,
              required(:host) => String.t() | charlist(),
              optional(:port) => 1..65535,
              optional(:username) => String.t(),
              optional(:password) => String.t()
            }

  @typedoc """
  One option of `connect/2` (see `connect/2` for what each does).

  Dialyzer checks a call's options against this type, but it widens a union
  of more than 13 tagged tuples to `{atom(), term()}`: it reports a value
  that is not a keyword list or map, not a misspelled name (that is
  `{:error, {:bad_option, name, value}}` at run time).
  """
  @type option ::
          {:headers, [{header_part(), header_part() | (() -> header_part())}]}
          | {:protocols, [String.t() | charlist()]}
          | {:connect_timeout, pos_integer()}
          | {:tls, [tls_option()] | map()}
          | {:max_message_size, pos_integer()}
          | {:active, boolean() | :once | non_neg_integer()}
          | {:ping_interval, non_neg_integer()}
          | {:idle_timeout, non_neg_integer()}
          | {:retry, boolean() | [retry_option()] | map()}
          | {:retry_on, :ws_port_retry.retry_on()}
          | {:retry_fun, :ws_port_retry.retry_fun()}
          | {:retry_state, :ws_port_retry.retry_state()}
          | {:proxy, proxy()}
          | {:send_queue, non_neg_integer()}
          | {:compress, boolean() | [compress_option()] | map()}
          | {:driver, atom() | pid()}
          | {:await, boolean()}

  @typedoc "Options of `connect/2`: a keyword list of `t:option/0`, or a map of the same keys."
  @type connect_opts :: [option()] | map()

  @doc """
  Opens a WebSocket connection owned by the caller.

  `url` is `ws://host[:port]/path` or `wss://...`, a string or a `%URI{}`.
  Options (keyword list or map):

    * `:headers` - extra request headers, `[{name, value}]`; not the
      handshake's own (`Host`, `Upgrade`, `Connection`,
      `Sec-WebSocket-Key`, `Sec-WebSocket-Version`, and
      `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions`, which come
      from `:protocols` and `:compress`): those are `{:error, {:bad_option,
      :headers, headers}}`. A value may be a
      zero-arity fun returning it. Every value is kept as a fun in process
      state (the driver, `WsPort.Client`, supervisors, `WsPort.Producer`),
      so an `Authorization` never shows in clear there.
    * `:protocols` - the `Sec-WebSocket-Protocol` offer, a list of strings.
    * `:connect_timeout` - ms for DNS, TCP, TLS and the upgrade together
      (default 15000).
    * `:tls` - for `wss`: `verify: :verify_peer | :verify_none`,
      `cacertfile:`, `certfile:`, `keyfile:`, `server_name:` (default: verify
      against the system CA store, name from the URL); the client
      certificate in memory as `cert:` (DER, a list of DER leaf first, or
      PEM) and `key:` (PEM, DER or `{:PrivateKeyInfo, der}` etc.);
      `password:` (or a 0-arity fun giving it) for an encrypted `key` or
      `keyfile`; `reuse_sessions:` (default `true`: a reconnect offers the
      connection's last TLS session, so the server can resume it). See the
      README's options table.
    * `:max_message_size` - bytes (default 64 MiB): a larger message from
      the server closes the connection (1009); `send/2` refuses larger ones.
    * `:active` - `true` (default), `false`, `:once` or an integer `n >= 0`
      (the initial credit), as `:gen_tcp`.
    * `:ping_interval`, `:idle_timeout` - ms, 0 = off (default).
    * `:retry` - the reconnection policy, on by default: a keyword list or
      map of `:max_retries` (default `:infinity`), `:delay` (ms, 1000),
      `:max_delay` (ms, 30000), `:backoff_factor` (2; 1 = constant),
      `:jitter` (`:full`, the default: each wait drawn uniformly from 0 to
      the delay; `:equal`: from half the delay to the delay; a number: a
      fraction, 0.1 = ±10%, 0 = none; alias `:jitter_fraction`) and `:manual`
      (`false`; `true`: the owner calls `reconnect/2` after each
      `:ws_port_down`). Keys not given keep their defaults; `true` is the
      default policy, `false` disables reconnection. The port program
      reconnects by itself after failures of the classes in `:retry_on`.
    * `:retry_on` - which failures are retried (see `:ws_port_retry`): a
      list of the classes `:network`, `:timeout`, `:http_5xx`, `:http_429`,
      `:http_4xx`, `:tls`, `:protocol`, `:http_other` and at most one of
      `:remote_close` (every server close), `{:remote_close, codes}` or
      `{:remote_close, {:except, codes}}`, or a named policy (default
      `:default`, which is `[:network, :timeout, :http_5xx, :http_429,
      :protocol, {:remote_close, [1001, 1005, 1006, 1011, 1012, 1013,
      1014]}]`: a server close with 1000 or another code ends the
      connection; `:stay_connected`: every server close but 1002, 1003,
      1007 and 1009 is retried, the default of `WsPort.Client`).
    * `:retry_fun` - `(state -> state | :stop)`, the contract of
      off_broadway_websocket's `ws_retry_fun`: called after each failed
      attempt with the current state (initially `:retry_state`), it returns
      the next state, whose `:delay` (ms) is waited before the next try and
      which is the next call's input (extra keys are carried through), or
      `:stop` (then `{:ws_port_closed, conn, last_reason}`). A crash or a bad
      return value is logged and stops the retries. The state starts again
      from `:retry_state` after a successful reconnect. It runs in the
      driver process: keep it quick and do not call `WsPort` from it.
      Replaces `:retry`.
    * `:retry_state` - the initial state of `:retry_fun` (default
      `%{max_retries: 5, retries_left: 5, delay: 10_000}`).
    * `:send_queue` - up to `n` text/binary messages sent while the
      connection is not open are kept by the port and written, in order,
      after the next handshake; when `n` are kept the port drops the message
      and the owner gets `{:ws_port_error, conn, {:not_connected, detail}}`
      (default 0: such sends return `{:error, :not_connected}`).
    * `:compress` - permessage-deflate (RFC 7692): `false` (default),
      `true`, or a keyword list or map of `:client_max_window_bits` (`true`
      or 9..15), `:server_max_window_bits` (8..15),
      `:client_no_context_takeover`, `:server_no_context_takeover`
      (booleans), `:level` (0..9), `:mem_level` (1..9), `:threshold`
      (bytes; shorter messages go uncompressed, default 64). `info/1`'s
      `:compression` says what was agreed.
    * `:driver` - a driver's registered name or pid (default: one of the
      application's pool).
    * `:await` - `true` (default) returns once the first attempt succeeded
      or failed (within `:connect_timeout`): a failure is `{:error, reason}`
      and is not retried; `false` returns `{:ok, conn}` at once and the owner
      gets `{:ws_port_up, conn, info}`, or `{:ws_port_down, conn, reason,
      info}` (then retries) or `{:ws_port_closed, conn, reason}`.

  A bad option gives `{:error, {:bad_option, name, value}}` (an option
  given twice: `{:error, {:bad_option, {:duplicate, name}, value}}`).
  Before the `:ws_port` application is started (it is, as a dependency of
  your application; in a script: `Application.ensure_all_started(:ws_port)`),
  `{:error, {:not_started, :ws_port}}`.
  """
  @spec connect(String.t() | charlist() | URI.t(), connect_opts()) ::
          {:ok, conn()} | {:error, term()}
  def connect(url, opts \\ []), do: :ws_port.connect(url, opts)

  @doc """
  Sends one message: `{:text, iodata}`, `{:binary, iodata}`, `{:ping, iodata}`
  or `{:pong, iodata}`. The caller writes to the port itself (no process hop).

  Returns `{:error, :not_connected}` while the connection is not open
  (handshake, waiting to retry) unless it has a `:send_queue` (see
  `connect/2`), and `{:error, :closed}` once the connection is closed.

  A message the connection may not send is refused before it reaches the
  port: `{:error, {:invalid_utf8, offset}}` for text that is not UTF-8
  (`offset`: the first byte not part of a valid character), `{:error,
  {:too_large, size, limit}}` for a ping or pong payload over 125 bytes or
  a message over the connection's `:max_message_size` (default 64 MiB).

  Arguments of the wrong shape (not a connection, not `{type, iodata}`)
  raise `ArgumentError` naming the argument, as do the other functions of
  this module; nothing is sent and nothing is logged.
  """
  @spec send(conn(), message()) :: :ok | {:error, :ws_port.send_error()}
  def send(conn, message), do: :ws_port.send(conn, message)

  @doc "Sends a text message (`data` must be UTF-8, else `{:error, {:invalid_utf8, offset}}`)."
  @spec send_text(conn(), iodata()) :: :ok | {:error, :ws_port.send_error()}
  def send_text(conn, data), do: :ws_port.send(conn, {:text, data})

  @doc "Sends a binary message."
  @spec send_binary(conn(), iodata()) :: :ok | {:error, :ws_port.send_error()}
  def send_binary(conn, data), do: :ws_port.send(conn, {:binary, data})

  @doc """
  Closes a connection with code 1000. The owner gets no further message for
  `conn`; closing a closed connection is `:ok`.
  """
  @spec close(conn()) :: :ok
  def close(conn), do: :ws_port.close(conn)

  @doc """
  Closes a connection with a close `code` a client may send (RFC 6455 7.4:
  1000-1003, 1007-1014, 3000-4999) and a `reason` of at most 123 bytes of
  UTF-8; anything else raises `ArgumentError` naming it.
  """
  @spec close(conn(), 1000..4999, String.t()) :: :ok
  def close(conn, code, reason), do: :ws_port.close(conn, code, reason)

  @doc """
  Sets options of a connection. Only `active: true | false | :once | n`
  (`:gen_tcp` semantics: `n` adds `n` to the credit and
  `{:ws_port_passive, conn}` comes when it reaches 0).
  """
  @spec setopts(conn(), keyword()) :: :ok | {:error, term()}
  def setopts(conn, opts), do: :ws_port.setopts(conn, opts)

  @doc """
  Makes `pid` (a process of this node) the owner of `conn`. Only the
  current owner may call it; returns `{:error, :not_owner}` otherwise.
  """
  @spec controlling_process(conn(), pid()) :: :ok | {:error, :not_owner | :closed}
  def controlling_process(conn, pid), do: :ws_port.controlling_process(conn, pid)

  @doc """
  Reconnects after `delay_ms`, keeping the handle.

  On an open (or connecting) connection: drops it now (close 1000
  `"reconnecting"` when open) and opens it again, whatever the retry
  policy; the owner gets `{:ws_port_down, conn, :reconnect, %{delay_ms:
  delay_ms}}` then `{:ws_port_up, conn, info}`. Use it when the link looks
  dead to you (missed application heartbeats).

  In manual retry mode (`retry: [manual: true]`), tells the port program to
  try again after `delay_ms`: the answer to `{:ws_port_down, conn, reason,
  %{delay_ms: :manual}}`. Close the connection to give up.
  `{:error, :closed}` once the connection is closed.
  """
  @spec reconnect(conn(), non_neg_integer()) :: :ok | {:error, :closed}
  def reconnect(conn, delay_ms), do: :ws_port.reconnect(conn, delay_ms)

  @doc """
  Statistics of a connection: `:state` (`:open`, `:reconnecting`,
  `:connecting`, ...), `:url`, `:attempt`, `:reconnects`, `:bytes_in`,
  `:bytes_out`, `:msgs_in`, `:msgs_out`, `:rtt_us` (last pong round trip),
  `:connected_us`, `:credit`, `:tls_resumed` (wss: whether the open
  connection's TLS handshake resumed a session), plus `:id`, `:driver` and `:owner`, and the
  current connection's handshake: `:protocol` (the subprotocol the server
  chose, `:undefined` if none) and `:headers` (the upgrade response's
  headers); both are `:undefined` while the connection is not open (see `:ws_port.info/1`).
  """
  @spec info(conn()) :: {:ok, map()} | {:error, :closed}
  def info(conn), do: :ws_port.info(conn)
end
