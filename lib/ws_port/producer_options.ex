defmodule WsPort.ProducerOptions do
  @moduledoc """
  Validation of the options of `WsPort.Producer` (a plain module: no
  Broadway, no NimbleOptions, tested in CI).

  `validate/1` takes the keyword list (or map) given as
  `producer: [module: {WsPort.Producer, opts}]` and returns a normalised
  config map, or `{:error, message}` where the message names the option, the
  value given and what is accepted. `connect_opts/1` turns a config into the
  options of `:ws_port.connect/2`.

  The options themselves are documented in `WsPort.Producer`'s moduledoc
  (and in the README, section "Broadway"); aliases taken from
  off_broadway_websocket: `await_timeout` = `connect_timeout`, `ws_timeout` =
  `idle_timeout`, `ws_retry_opts` = `retry`.
  """

  @typedoc "A validated configuration."
  @type t :: %{
          url: String.t(),
          headers: [{String.t(), String.t()}],
          protocols: [String.t()],
          tls: map() | nil,
          proxy: term() | nil,
          connect_timeout: pos_integer(),
          idle_timeout: non_neg_integer(),
          ping_interval: non_neg_integer(),
          max_message_size: pos_integer() | nil,
          compress: false | map(),
          retry: false | map(),
          retry_fun: (map() -> map() | :stop) | nil,
          retry_on: :ws_port_retry.retry_on(),
          telemetry_id: atom(),
          on_connect: [frame()] | (() -> [frame()]),
          max_buffer: non_neg_integer()
        }

  @typedoc "A frame sent after every (re)connect (a bare string is text)."
  @type frame :: {:text, iodata()} | {:binary, iodata()} | String.t()

  @default_connect_timeout 15_000
  @default_max_buffer 10
  @default_telemetry_id :websocket_producer

  # Keys of `retry` / `ws_retry_opts` (off_broadway_websocket's names; `jitter`
  # is ws_port's name for `jitter_fraction`).
  @retry_keys [
    :max_retries,
    :retries_left,
    :delay,
    :max_delay,
    :backoff_factor,
    :jitter_fraction,
    :jitter
  ]
  @retry_on_accepts ":default, :stay_connected or a list of :network, :timeout, " <>
                      ":http_5xx, :http_429, :http_4xx, :tls, :protocol, :http_other " <>
                      "and at most one of :remote_close, {:remote_close, codes}, " <>
                      "{:remote_close, {:except, codes}} (codes: integers 1000..4999)"
  # every key of :ws_port.connect/2's :tls (one list, in ws_port_proto)
  @tls_keys :ws_port_proto.tls_keys()

  @aliases %{await_timeout: :connect_timeout, ws_timeout: :idle_timeout, ws_retry_opts: :retry}

  @known [
    :url,
    :path,
    :headers,
    :protocols,
    :tls,
    :proxy,
    :connect_timeout,
    :idle_timeout,
    :ping_interval,
    :max_message_size,
    :compress,
    :retry,
    :ws_retry_fun,
    :retry_on,
    :telemetry_id,
    :on_connect,
    :max_buffer
  ]

  # Options off_broadway_websocket takes that have no meaning here.
  @hints %{
    gun_opts:
      "ws_port does not use gun: use :connect_timeout, :tls (verify, cacertfile, certfile, " <>
        "keyfile, cert, key, password, server_name, ...), :protocols and :ping_interval instead",
    min_demand:
      "demand is set on Broadway's processors (processors: [default: [min_demand: ...]])",
    max_demand:
      "demand is set on Broadway's processors (processors: [default: [max_demand: ...]])"
  }

  @doc "The options accepted (aliases not included)."
  @spec known() :: [atom()]
  def known, do: @known

  @doc """
  Validates producer options. Returns `{:ok, config}` or `{:error, message}`;
  the message names the first bad option. The `:broadway` key that Broadway
  adds is ignored.
  """
  @spec validate(keyword() | map()) :: {:ok, t()} | {:error, String.t()}
  def validate(opts) when is_map(opts), do: validate(Map.to_list(opts))

  def validate(opts) when is_list(opts) do
    with :ok <- check_keyword(opts),
         {:ok, opts} <- resolve_aliases(Keyword.delete(opts, :broadway)),
         :ok <- check_unknown(opts),
         {:ok, url} <- url(opts),
         {:ok, headers} <- headers(Keyword.get(opts, :headers, [])),
         {:ok, protocols} <- protocols(Keyword.get(opts, :protocols, [])),
         {:ok, tls} <- tls(Keyword.get(opts, :tls)),
         {:ok, proxy} <- proxy(Keyword.get(opts, :proxy)),
         {:ok, connect_timeout} <-
           integer(opts, :connect_timeout, @default_connect_timeout, 1, "a positive integer (ms)"),
         {:ok, idle_timeout} <- timeout_or_nil(opts, :idle_timeout),
         {:ok, ping_interval} <- timeout_or_nil(opts, :ping_interval),
         {:ok, max_message_size} <- max_message_size(Keyword.get(opts, :max_message_size)),
         {:ok, compress} <- compress(Keyword.get(opts, :compress, false)),
         {:ok, retry_fun} <- retry_fun(Keyword.get(opts, :ws_retry_fun)),
         {:ok, retry} <- retry(Keyword.get(opts, :retry, true), retry_fun),
         {:ok, retry_on} <- retry_on(Keyword.get(opts, :retry_on)),
         {:ok, telemetry_id} <-
           telemetry_id(Keyword.get(opts, :telemetry_id, @default_telemetry_id)),
         {:ok, on_connect} <- on_connect(Keyword.get(opts, :on_connect, [])),
         {:ok, max_buffer} <-
           integer(opts, :max_buffer, @default_max_buffer, 0, "a non-negative integer (messages)") do
      {:ok,
       %{
         url: url,
         headers: headers,
         protocols: protocols,
         tls: tls,
         proxy: proxy,
         connect_timeout: connect_timeout,
         idle_timeout: idle_timeout,
         ping_interval: ping_interval,
         max_message_size: max_message_size,
         compress: compress,
         retry: retry,
         retry_fun: retry_fun,
         retry_on: retry_on,
         telemetry_id: telemetry_id,
         on_connect: on_connect,
         max_buffer: max_buffer
       }}
    end
  end

  def validate(other),
    do: {:error, "expected the options as a keyword list or a map, got: #{inspect(other)}"}

  @doc """
  The options of `:ws_port.connect/2` for a validated config: `await: false`
  (the producer never blocks in `init/1`) and `active: false` (no message is
  read before Broadway asks for it).
  """
  @spec connect_opts(t()) :: map()
  def connect_opts(config) do
    base = %{
      await: false,
      active: false,
      headers: config.headers,
      protocols: config.protocols,
      connect_timeout: config.connect_timeout,
      idle_timeout: config.idle_timeout,
      ping_interval: config.ping_interval
    }

    base
    |> put_if(:tls, config.tls)
    |> put_if(:proxy, config.proxy)
    |> put_if(:max_message_size, config.max_message_size)
    |> Map.put(:compress, config.compress)
    |> Map.put(:retry_on, config.retry_on)
    |> put_retry(config)
  end

  defp put_retry(opts, %{retry_fun: fun, retry: state}) when is_function(fun, 1),
    do: Map.merge(opts, %{retry_fun: fun, retry_state: state})

  defp put_retry(opts, %{retry: retry}), do: Map.put(opts, :retry, retry)

  defp put_if(map, _key, nil), do: map
  defp put_if(map, key, value), do: Map.put(map, key, value)

  ## checks

  defp check_keyword(opts) do
    case Enum.find(opts, &(not match?({k, _} when is_atom(k), &1))) do
      nil -> :ok
      bad -> {:error, "expected a keyword list of options, found the element #{inspect(bad)}"}
    end
  end

  # An alias and its option together must agree.
  defp resolve_aliases(opts) do
    Enum.reduce_while(@aliases, {:ok, opts}, fn {alias_name, name}, {:ok, acc} ->
      case {Keyword.fetch(acc, alias_name), Keyword.fetch(acc, name)} do
        {:error, _} ->
          {:cont, {:ok, acc}}

        {{:ok, v}, :error} ->
          {:cont, {:ok, acc |> Keyword.delete(alias_name) |> Keyword.put(name, v)}}

        {{:ok, v}, {:ok, v}} ->
          {:cont, {:ok, Keyword.delete(acc, alias_name)}}

        {{:ok, a}, {:ok, b}} ->
          {:halt,
           {:error,
            "#{inspect(alias_name)} is an alias of #{inspect(name)}; both were given with " <>
              "different values (#{inspect(a)} and #{inspect(b)}): give only one"}}
      end
    end)
  end

  defp check_unknown(opts) do
    case Enum.find(Keyword.keys(opts), &(&1 not in @known)) do
      nil ->
        :ok

      key ->
        hint =
          case Map.fetch(@hints, key) do
            {:ok, h} -> ": " <> h
            :error -> ""
          end

        {:error,
         "unknown option #{inspect(key)}#{hint}. Accepted options: " <>
           Enum.map_join(@known ++ Map.keys(@aliases), ", ", &inspect/1)}
    end
  end

  defp url(opts) do
    with {:ok, url} <- required_url(Keyword.get(opts, :url)),
         {:ok, path} <- path(Keyword.get(opts, :path)) do
      {:ok, join_path(url, path)}
    end
  end

  defp required_url(nil),
    do: {:error, "required option :url is missing: give a ws:// or wss:// URL"}

  defp required_url(%URI{} = uri), do: required_url(URI.to_string(uri))

  defp required_url(url) when is_list(url) do
    case chardata(url) do
      {:ok, s} -> required_url(s)
      :error -> bad(:url, url, "a ws:// or wss:// URL (a string)")
    end
  end

  defp required_url(url) when is_binary(url) do
    case URI.parse(url) do
      %URI{scheme: scheme, host: host}
      when scheme in ["ws", "wss"] and is_binary(host) and host != "" ->
        {:ok, url}

      _ ->
        bad(:url, url, "a ws:// or wss:// URL with a host, e.g. \"wss://example.com/stream\"")
    end
  end

  defp required_url(url), do: bad(:url, url, "a ws:// or wss:// URL (a string)")

  defp path(nil), do: {:ok, nil}
  defp path(p) when is_binary(p), do: {:ok, p}

  defp path(p) when is_list(p) do
    case chardata(p) do
      {:ok, s} -> {:ok, s}
      :error -> bad(:path, p, "a string appended to :url, e.g. \"/stream?x=1\"")
    end
  end

  defp path(p), do: bad(:path, p, "a string appended to :url, e.g. \"/stream?x=1\"")

  @doc false
  # "wss://h" + "/a" -> "wss://h/a"; "wss://h/" + "a" -> "wss://h/a";
  # "wss://h/x" + "?q=1" -> "wss://h/x?q=1".
  def join_path(url, nil), do: url
  def join_path(url, ""), do: url
  def join_path(url, "?" <> _ = query), do: url <> query

  def join_path(url, path),
    do: String.trim_trailing(url, "/") <> "/" <> String.trim_leading(path, "/")

  defp headers(headers) when is_list(headers) do
    Enum.reduce_while(headers, {:ok, []}, fn
      {name, value}, {:ok, acc} ->
        with {:ok, n} <- header_part(name),
             {:ok, v} <- header_part(value) do
          {:cont, {:ok, [{n, v} | acc]}}
        else
          :error -> {:halt, bad_header({name, value})}
        end

      other, _ ->
        {:halt, bad_header(other)}
    end)
    |> case do
      # the values kept as funs (an Authorization or a Cookie): the
      # producer's state never holds them in clear; :ws_port.connect/2
      # takes them so
      {:ok, acc} -> {:ok, :ws_port_proto.conceal(%{headers: Enum.reverse(acc)}).headers}
      error -> error
    end
  end

  defp headers(other), do: bad(:headers, other, "a list of {name, value} strings")

  defp bad_header(h),
    do:
      {:error,
       "invalid value in option :headers: #{inspect(h)}; expected {name, value} where both are " <>
         "strings (atoms, charlists and integer values are converted)"}

  defp header_part(v) when is_binary(v), do: {:ok, v}

  defp header_part(v) when is_atom(v) and v not in [nil, true, false],
    do: {:ok, Atom.to_string(v)}

  defp header_part(v) when is_integer(v), do: {:ok, Integer.to_string(v)}
  defp header_part(v) when is_list(v), do: chardata(v)
  defp header_part(_), do: :error

  defp protocols(list) when is_list(list) do
    if Enum.all?(list, &(is_binary(&1) and &1 != "")) do
      {:ok, list}
    else
      bad(:protocols, list, "a list of non-empty strings (Sec-WebSocket-Protocol values)")
    end
  end

  defp protocols(other), do: bad(:protocols, other, "a list of non-empty strings")

  # the value is kept as given (ws_port.connect/2 takes it), inside a fun (it
  # may hold credentials: not in the producer's state in clear); never
  # echoed in the message, which may be a URL with credentials
  defp proxy(nil), do: {:ok, nil}

  defp proxy(proxy) do
    case :ws_port_proxy.normalize(proxy) do
      {:ok, _} ->
        {:ok, :ws_port_proto.conceal(%{proxy: proxy}).proxy}

      {:error, {:bad_option, part, value}} ->
        {:error,
         "invalid value for option :proxy (#{inspect(part)}: #{inspect(value)}); expected a " <>
           "proxy URL (\"http://[user:pass@]host:port\", \"socks5://...\"), a map or :system"}
    end
  end

  defp tls(nil), do: {:ok, nil}

  defp tls(tls) when is_list(tls),
    do:
      if(Keyword.keyword?(tls),
        do: tls(Map.new(tls)),
        else: bad_tls(:ws_port_proto.scrub(tls))
      )

  # checked as :ws_port.connect/2 checks it (ws_port_proto), so every key it
  # takes is taken here; the key and password are never shown in an error
  defp tls(tls) when is_map(tls) do
    case Enum.find(Map.keys(tls), &(&1 not in @tls_keys)) do
      nil ->
        case :ws_port_proto.normalize_connect_opts(%{tls: tls}) do
          {:ok, _} ->
            # the key and password kept as funs: the producer's state (its
            # config) never holds them in clear
            {:ok, :ws_port_proto.conceal(%{tls: tls}).tls}

          {:error, {:bad_option, {:tls, :verify}, v}} ->
            bad(:tls, [verify: v], ":verify_peer or :verify_none for :verify")

          {:error, {:bad_option, {:tls, k}, v}} ->
            # v is :redacted for :key and :password
            {:error,
             "invalid value for #{inspect(k)} in option :tls: #{inspect(v)} (the rules of " <>
               ":ws_port.connect/2's :tls)"}

          {:error, {:bad_option, {:duplicate, {:tls, k}}, _}} ->
            {:error, "#{inspect(k)} given twice in option :tls"}

          {:error, _} ->
            bad_tls(:redacted)
        end

      k ->
        {:error,
         "unknown key #{inspect(k)} in option :tls; accepted keys: " <>
           Enum.map_join(@tls_keys, ", ", &inspect/1)}
    end
  end

  defp tls(other), do: bad_tls(:ws_port_proto.scrub(other))

  defp bad_tls(v),
    do: bad(:tls, v, "a keyword list or map of " <> Enum.map_join(@tls_keys, ", ", &inspect/1))

  defp integer(opts, key, default, min, accepted) do
    case Keyword.get(opts, key, default) do
      n when is_integer(n) and n >= min and n <= 4_294_967_295 -> {:ok, n}
      other -> bad(key, other, accepted)
    end
  end

  # nil (off_broadway_websocket's default for ws_timeout) means off.
  defp timeout_or_nil(opts, key) do
    case Keyword.get(opts, key) do
      nil -> {:ok, 0}
      n when is_integer(n) and n >= 0 and n <= 4_294_967_295 -> {:ok, n}
      other -> bad(key, other, "a non-negative integer (ms; 0 or nil = off)")
    end
  end

  # the same rules as :ws_port.connect/2's (ws_port_proto)
  defp compress(value) do
    case :ws_port_proto.normalize_connect_opts(%{compress: value}) do
      {:ok, %{compress: c}} ->
        {:ok, c}

      {:error, {:bad_option, {:compress, key}, v}} ->
        bad(:compress, value, "valid #{inspect(key)} (got #{inspect(v)}); see WsPort.connect/2")

      {:error, _} ->
        bad(
          :compress,
          value,
          "false, true, or a keyword list or map of permessage-deflate parameters"
        )
    end
  end

  defp max_message_size(nil), do: {:ok, nil}
  defp max_message_size(n) when is_integer(n) and n > 0, do: {:ok, n}
  defp max_message_size(other), do: bad(:max_message_size, other, "a positive integer (bytes)")

  defp retry_fun(nil), do: {:ok, nil}
  defp retry_fun(f) when is_function(f, 1), do: {:ok, f}

  defp retry_fun(other),
    do: bad(:ws_retry_fun, other, "a function of arity 1: (retry_state -> retry_state | :stop)")

  # With ws_retry_fun the map is the fun's initial state (extra keys are
  # carried through); without it, it configures the port's own backoff.
  defp retry(false, nil), do: {:ok, false}

  defp retry(false, _fun),
    do:
      {:error,
       "option :retry (alias :ws_retry_opts) is false but :ws_retry_fun is given; " <>
         "give a map of the initial retry state, or drop :ws_retry_fun"}

  defp retry(true, nil), do: {:ok, %{}}
  defp retry(true, _fun), do: {:ok, %{max_retries: 5, retries_left: 5, delay: 10_000}}

  defp retry(list, fun) when is_list(list) do
    if Keyword.keyword?(list), do: retry(Map.new(list), fun), else: bad_retry(list)
  end

  defp retry(map, fun) when is_map(map) do
    with :ok <- check_retry_values(map) do
      if fun, do: retry_state(map), else: port_retry(map)
    end
  end

  defp retry(other, _), do: bad_retry(other)

  defp bad_retry(v),
    do:
      bad(
        :retry,
        v,
        "false, true, or a keyword list or map of " <>
          Enum.map_join(@retry_keys, ", ", &inspect/1)
      )

  defp retry_state(map) do
    case map do
      %{delay: _} ->
        {:ok, map}

      _ ->
        {:error,
         "option :retry (alias :ws_retry_opts) used with :ws_retry_fun must include :delay (ms)"}
    end
  end

  defp port_retry(map) do
    case Enum.find(Map.keys(map), &(&1 not in @retry_keys)) do
      nil ->
        if Map.has_key?(map, :jitter) and Map.has_key?(map, :jitter_fraction) do
          {:error, "option :retry: give :jitter_fraction or :jitter, not both"}
        else
          max = Map.get(map, :max_retries, Map.get(map, :retries_left, :infinity))
          jitter = Map.get(map, :jitter_fraction, Map.get(map, :jitter))

          {:ok,
           map
           |> Map.take([:delay, :max_delay, :backoff_factor])
           |> Map.put(:max_retries, max)
           |> put_if(:jitter, jitter)}
        end

      key ->
        {:error,
         "unknown key #{inspect(key)} in option :retry (alias :ws_retry_opts); accepted keys: " <>
           Enum.map_join(@retry_keys, ", ", &inspect/1) <>
           " (other keys are only carried through with :ws_retry_fun)"}
    end
  end

  defp check_retry_values(map) do
    Enum.find_value(map, :ok, fn {k, v} ->
      if k in @retry_keys and not valid_retry?(k, v) do
        bad({:retry, k}, v, retry_accepts(k))
      end
    end)
  end

  defp valid_retry?(:max_retries, :infinity), do: true
  defp valid_retry?(k, n) when k in [:max_retries, :retries_left], do: is_integer(n) and n >= 0

  defp valid_retry?(k, n) when k in [:delay, :max_delay],
    do: is_integer(n) and n >= 0 and n <= 4_294_967_295

  defp valid_retry?(:backoff_factor, x), do: is_number(x) and x >= 1

  defp valid_retry?(k, x) when k in [:jitter, :jitter_fraction],
    do: x in [:full, :equal] or (is_number(x) and x >= 0 and x <= 1)

  defp retry_accepts(:max_retries), do: "a non-negative integer or :infinity"
  defp retry_accepts(:retries_left), do: "a non-negative integer"
  defp retry_accepts(k) when k in [:delay, :max_delay], do: "a non-negative integer (ms)"
  defp retry_accepts(:backoff_factor), do: "a number >= 1 (1 = constant delay)"

  defp retry_accepts(_),
    do: ":full, :equal or a number between 0 and 1 (0.1 = +-10%, 0 = none)"

  # a pipeline stays connected: every server close but the answers to our
  # own frames is retried (:ws_port_retry.retry_on(:stay_connected))
  defp retry_on(nil), do: {:ok, :stay_connected}

  defp retry_on(value) do
    case :ws_port_retry.validate_retry_on(value) do
      :ok ->
        {:ok, value}

      {:error, {:bad_option, {:retry_on, :remote_close}, bad}} ->
        {:error,
         "invalid remote_close code in option :retry_on: #{inspect(bad)} " <>
           "(in #{inspect(value)}); expected #{@retry_on_accepts}"}

      {:error, {:bad_option, :retry_on, bad}} when bad != value ->
        {:error,
         "invalid element of option :retry_on: #{inspect(bad)} (in #{inspect(value)}); " <>
           "expected #{@retry_on_accepts}"}

      {:error, _} ->
        bad(:retry_on, value, @retry_on_accepts)
    end
  end

  defp telemetry_id(id) when is_atom(id) and id not in [nil, true, false], do: {:ok, id}

  defp telemetry_id(other),
    do: bad(:telemetry_id, other, "an atom (the first element of every event name)")

  defp on_connect(f) when is_function(f, 0), do: {:ok, f}

  defp on_connect(frames) when is_list(frames) do
    if Enum.all?(frames, &frame?/1),
      do: {:ok, frames},
      else: bad_on_connect(frames)
  end

  defp on_connect(other), do: bad_on_connect(other)

  defp bad_on_connect(v),
    do:
      bad(
        :on_connect,
        v,
        "a list of frames ({:text, iodata}, {:binary, iodata} or a string = text), " <>
          "or a function of arity 0 returning such a list"
      )

  @doc false
  def frame?(s) when is_binary(s), do: true
  def frame?({kind, data}) when kind in [:text, :binary], do: is_binary(data) or is_list(data)
  def frame?(_), do: false

  defp chardata(v) do
    case :unicode.characters_to_binary(v) do
      s when is_binary(s) -> {:ok, s}
      _ -> :error
    end
  rescue
    ArgumentError -> :error
  end

  defp bad({:retry, key}, value, accepted),
    do:
      {:error,
       "invalid value for #{inspect(key)} in option :retry (alias :ws_retry_opts): " <>
         "#{inspect(value)}; expected #{accepted}"}

  defp bad(key, value, accepted),
    do:
      {:error,
       "invalid value for option #{inspect(key)}: #{inspect(value)}; expected #{accepted}"}
end
