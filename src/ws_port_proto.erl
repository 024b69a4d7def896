%% @doc The BEAM side of the wire protocol between ws_port and the port
%% program `priv/ws_port' (see docs/protocol.md, which is binding).
%%
%% Pure functions only: validation and normalisation of the options given to
%% {@link ws_port:connect/2}, encoding of commands, decoding of data packets.
%% No process, no I/O, so all of it is covered by EUnit.
-module(ws_port_proto).

-export([normalize_url/1, normalize_connect_opts/1, wire_opts/1, options_map/1]).
-export([connect_cmd/3, send_cmd/3, close_cmd/3, active_cmd/2, stats_cmd/1, reconnect_cmd/2]).
-export([validate_active/1, validate_close/2, opcode/1, default_retry/0]).
-export([decode_data/1]).
-export([scrub/1, conceal/1, tls_keys/0]).

-export_type([id/0, active/0, frame_type/0, opts/0, wire_opt/0, data_entry/0, retry_class/0]).

%% A connection id, chosen by the BEAM side. 0 means the port program itself.
-type id() :: 1..4294967295.
%% As gen_tcp's `{active, _}'.
-type active() :: boolean() | once | -2147483648..2147483647.
-type frame_type() :: text | binary | ping | pong.

%% Normalised options, as returned by {@link normalize_connect_opts/1}.
-type opts() :: #{
    headers => [{binary(), binary()}],
    protocols => [binary()],
    connect_timeout := pos_integer(),
    tls => #{
        tls_key() => binary() | verify_peer | verify_none | disable | boolean() | [binary() | atom()]
    },
    max_message_size => pos_integer(),
    active := active(),
    ping_interval => non_neg_integer(),
    idle_timeout => non_neg_integer(),
    driver => atom() | pid(),
    await := boolean(),
    retry := false | #{retry_key() => term()},
    retry_fun => ws_port_retry:retry_fun(),
    retry_state => ws_port_retry:retry_state(),
    retry_on => ws_port_retry:retry_on(),
    send_queue => non_neg_integer(),
    compress => false | #{compress_key() => term()},
    proxy => ws_port_proxy:proxy() | none | system
}.
%% permessage-deflate parameters (RFC 7692) and zlib settings.
-type compress_key() ::
    client_max_window_bits
    | server_max_window_bits
    | client_no_context_takeover
    | server_no_context_takeover
    | level
    | mem_level
    | threshold.
-type tls_key() ::
    cert
    | key
    | password
    | verify
    | cacertfile
    | certfile
    | keyfile
    | server_name
    | server_name_indication
    | pins
    | cacerts
    | versions
    | ciphers
    | ciphersuites
    | reuse_sessions.
-type retry_key() :: max_retries | delay | max_delay | backoff_factor | jitter | manual.
-type retry_class() ::
    network
    | timeout
    | http_5xx
    | http_429
    | http_4xx
    | tls
    | protocol
    | remote_close
    | http_other.

%% One option of the `connect' command, as the port program reads it.
-type wire_opt() ::
    {headers, [{binary(), fun(() -> binary()) | binary()}]}
    | {protocols, [binary()]}
    | {connect_timeout, pos_integer()}
    | {max_message_size, pos_integer()}
    | {active, active()}
    | {verify, verify_peer | verify_none}
    | {cacertfile | certfile | keyfile | server_name, binary()}
    | {server_name_indication, disable}
    | {pins, [<<_:256>>]}
    | {cacerts, [binary()]}
    | {versions, ['tlsv1.2' | 'tlsv1.3']}
    | {ciphers | ciphersuites, binary()}
    | {cert, [binary(), ...]}
    | {key | password, fun(() -> binary()) | binary()}
    | {reuse_sessions, boolean()}
    | {ping_interval | idle_timeout, non_neg_integer()}
    | {retry, false | [{retry_key(), term()}]}
    | {retry_on, ws_port_retry:retry_on()}
    | {send_queue, non_neg_integer()}
    | {compress, [{compress_key(), term()}]}
    | {proxy, {http | socks5, binary(), 1..65535, binary(), fun(() -> binary())}}.

-type data_entry() :: {id(), text | binary, binary()}.

-define(DEFAULT_CONNECT_TIMEOUT, 15000).
-define(MAX_U32, 4294967295).
-define(MAX_ACTIVE, 2147483647).
-define(MIN_ACTIVE, -2147483648).
-define(RAW_SEND, 1).
-define(RAW_DATA, 1).

%%====================================================================
%% URL and options
%%====================================================================

%% @doc Turns a URL given as a binary or a string into a binary and checks
%% its scheme (`ws://' or `wss://', any case). The port program checks the
%% rest and answers `{invalid_url, Detail}' itself.
-spec normalize_url(ws_port:url() | term()) -> {ok, binary()} | {error, {invalid_url, binary()}}.
normalize_url(#{'__struct__' := 'Elixir.URI'} = Uri) ->
    %% An Elixir %URI{} (URI.parse/1, URI.new/1 or built by hand), as
    %% Mint and Slipstream take it: made back into its string.
    case uri_struct_to_binary(Uri) of
        {ok, Bin} -> normalize_url(Bin);
        error -> {error, {invalid_url, <<"a %URI{} without a scheme and host">>}}
    end;
normalize_url(Url) ->
    case to_binary(Url) of
        {ok, Bin} ->
            case has_ws_scheme(Bin) andalso binary:match(Bin, <<0>>) =:= nomatch of
                true -> {ok, Bin};
                false when byte_size(Bin) > 5 -> invalid_url(Bin);
                false -> {error, {invalid_url, <<"scheme must be ws:// or wss://">>}}
            end;
        error ->
            {error, {invalid_url, <<"not a string">>}}
    end.

%% The parts of a %URI{} (nil where absent) for uri_string:recompose/1;
%% the scheme's default port is left out, as URI.to_string/1 does.
uri_struct_to_binary(#{scheme := Scheme, host := Host} = Uri) when
    is_binary(Scheme), is_binary(Host), Host =/= <<>>
->
    %% uri_string:recompose/1 needs a path, empty or not
    Parts0 = maps:from_list([
        {K, V}
     || K <- [scheme, userinfo, host, port, path, query, fragment],
        V <- [maps:get(K, Uri, nil)],
        V =/= nil
    ] ++ [{path, <<>>} || maps:get(path, Uri, nil) =:= nil]),
    Parts =
        case {string:lowercase(Scheme), maps:get(port, Parts0, none)} of
            {<<"ws">>, 80} -> maps:remove(port, Parts0);
            {<<"wss">>, 443} -> maps:remove(port, Parts0);
            _ -> Parts0
        end,
    try uri_string:recompose(Parts) of
        Bin when is_binary(Bin) -> {ok, Bin};
        _ -> error
    catch
        _:_ -> error
    end;
uri_struct_to_binary(_) ->
    error.

invalid_url(Bin) ->
    case has_ws_scheme(Bin) of
        true -> {error, {invalid_url, <<"the URL contains a NUL byte">>}};
        false -> {error, {invalid_url, <<"scheme must be ws:// or wss://">>}}
    end.

has_ws_scheme(<<W, S, "://", _/binary>>) when W bor 32 =:= $w, S bor 32 =:= $s ->
    true;
has_ws_scheme(<<W, S, S2, "://", _/binary>>) when
    W bor 32 =:= $w, S bor 32 =:= $s, S2 bor 32 =:= $s
->
    true;
has_ws_scheme(_) ->
    false.

%% @doc Validates and normalises the options of {@link ws_port:connect/2}.
%%
%% Accepts a map or a proplist (a bare atom `A' means `{A, true}'); an
%% option given twice in a proplist is refused: `{bad_option, {duplicate,
%% Name}, SecondValue}' (`{duplicate, {tls | retry, Key}}' inside those).
%% Names, values, header names and values given as strings or atoms become
%% binaries. Defaults are filled in for
%% `connect_timeout' (15000), `active' (true), `await' (true) and `retry'.
%%
%% `retry' is always present in the result: `false', or a map of
%% `max_retries', `delay', `max_delay', `backoff_factor', `jitter' (alias
%% `jitter_fraction') and `manual', where the keys not given take their
%% values from {@link default_retry/0} (also for `retry => true' and when
%% `retry' is absent). With `retry_fun' (a fun of arity 1, see
%% {@link ws_port_retry}) `retry' becomes `#{manual => true}' and
%% `retry_state' (a map) is filled in with
%% {@link ws_port_retry:default_state/0}; `retry_fun' together with a
%% `retry' other than `true' is refused (`{bad_option, retry, Value}'), and
%% so is `retry_state' without `retry_fun'.
%%
%% `compress' (permessage-deflate, RFC 7692): `false' (the default),
%% `true', or a map or proplist of `client_max_window_bits' (`true' or
%% 9..15), `server_max_window_bits' (8..15), `client_no_context_takeover',
%% `server_no_context_takeover' (booleans), `level' (0..9), `mem_level'
%% (1..9) and `threshold' (bytes); `true' becomes `#{}'. A bad entry is
%% `{bad_option, {compress, Key}, Value}'.
%%
%% The first bad option is named: `{error, {bad_option, Name, Value}}', or
%% `{error, {bad_option, {tls | retry, Key}, Value}}' inside `tls' or
%% `retry'. `active' must not be negative here (a connection starts with a
%% credit of N >= 0); `headers' may not set the handshake's own headers
%% (`Host', `Upgrade', `Connection', `Sec-WebSocket-Key',
%% `Sec-WebSocket-Version').
-spec normalize_connect_opts(map() | proplists:proplist()) ->
    {ok, opts()} | {error, {bad_option, term(), term()}}.
normalize_connect_opts(Opts) when is_list(Opts) ->
    case proplist_to_map(Opts) of
        {ok, Map} -> normalize_connect_opts(Map);
        {error, _} = Error -> Error
    end;
normalize_connect_opts(Opts) when is_map(Opts) ->
    Defaults = #{connect_timeout => ?DEFAULT_CONNECT_TIMEOUT, active => true, await => true},
    case normalize_each(lists:sort(maps:to_list(Opts)), Defaults) of
        {ok, Normal} -> finish_retry(Opts, Normal);
        {error, _} = Error -> Error
    end;
normalize_connect_opts(Opts) ->
    {error, {bad_option, opts, Opts}}.

%% @doc The retry policy used when `retry' is absent or `true': retry
%% forever, exponential from 1 s (factor 2) up to 30 s, with full jitter
%% (each wait drawn uniformly from 0 to that delay: connections that lost
%% their server together do not come back together).
-spec default_retry() -> #{retry_key() => term()}.
default_retry() ->
    #{max_retries => infinity, delay => 1000, max_delay => 30000, backoff_factor => 2, jitter => full}.

%% retry, retry_fun and retry_state depend on each other.
finish_retry(#{retry_fun := _} = Given, Normal) ->
    case Given of
        #{retry := Retry} when Retry =/= true ->
            {error, {bad_option, retry, Retry}};
        _ ->
            State = maps:get(retry_state, Normal, ws_port_retry:default_state()),
            {ok, Normal#{retry => #{manual => true}, retry_state => State}}
    end;
finish_retry(#{retry_state := State}, _Normal) ->
    {error, {bad_option, retry_state, State}};
finish_retry(_Given, #{retry := _} = Normal) ->
    {ok, Normal};
finish_retry(_Given, Normal) ->
    {ok, Normal#{retry => default_retry()}}.

normalize_each([], Acc) ->
    {ok, Acc};
normalize_each([{Name, Value} | Rest], Acc) ->
    case normalize_opt(Name, Value) of
        {ok, Normal} -> normalize_each(Rest, Acc#{Name => Normal});
        error -> {error, {bad_option, Name, Value}};
        {error, _} = Error -> Error
    end.

normalize_opt(headers, Headers) ->
    map_list(fun normalize_header/1, Headers);
normalize_opt(protocols, Protocols) ->
    map_list(fun normalize_token/1, Protocols);
normalize_opt(connect_timeout, T) when is_integer(T), T > 0, T =< ?MAX_U32 -> {ok, T};
%% the wire carries a message in a 32-bit length with a 10-byte header
normalize_opt(max_message_size, N) when is_integer(N), N > 0, N =< ?MAX_U32 - 16 -> {ok, N};
%% a connection starts with a credit: N >= 0 (gen_tcp's negative N only
%% makes sense as a change, in setopts)
normalize_opt(active, N) when is_integer(N), N < 0 -> error;
normalize_opt(active, A) ->
    case validate_active(A) of
        ok -> {ok, A};
        error -> error
    end;
normalize_opt(ping_interval, T) when is_integer(T), T >= 0, T =< ?MAX_U32 -> {ok, T};
normalize_opt(idle_timeout, T) when is_integer(T), T >= 0, T =< ?MAX_U32 -> {ok, T};
normalize_opt(tls, Tls) when is_map(Tls) ->
    normalize_tls(maps:to_list(Tls), #{});
normalize_opt(tls, Tls) when is_list(Tls) ->
    case proplist_to_map(Tls) of
        {ok, Map} -> normalize_opt(tls, Map);
        {error, {bad_option, {duplicate, K}, V}} ->
            {error, {bad_option, {duplicate, {tls, K}}, shown_tls(K, V)}};
        {error, _} -> error
    end;
normalize_opt(retry, false) ->
    {ok, false};
normalize_opt(retry, true) ->
    {ok, default_retry()};
normalize_opt(retry, Retry) when is_map(Retry) ->
    case Retry of
        #{jitter := _, jitter_fraction := J} ->
            {error, {bad_option, {retry, jitter_fraction}, J}};
        _ ->
            normalize_retry(lists:sort(maps:to_list(Retry)), default_retry())
    end;
normalize_opt(retry, Retry) when is_list(Retry) ->
    case proplist_to_map(Retry) of
        {ok, Map} -> normalize_opt(retry, Map);
        {error, {bad_option, {duplicate, K}, V}} -> {error, {bad_option, {duplicate, {retry, K}}, V}};
        {error, _} -> error
    end;
normalize_opt(retry_on, RetryOn) ->
    case ws_port_retry:validate_retry_on(RetryOn) of
        ok -> {ok, RetryOn};
        {error, _} = Error -> Error
    end;
normalize_opt(retry_fun, F) ->
    case ws_port_retry:validate_fun(F) of
        ok -> {ok, F};
        error -> error
    end;
normalize_opt(retry_state, S) ->
    case ws_port_retry:validate_state(S) of
        ok -> {ok, S};
        error -> error
    end;
normalize_opt(compress, false) ->
    {ok, false};
normalize_opt(compress, true) ->
    {ok, #{}};
normalize_opt(compress, C) when is_map(C) ->
    normalize_compress(lists:sort(maps:to_list(C)), #{});
normalize_opt(compress, C) when is_list(C) ->
    case proplist_to_map(C) of
        {ok, Map} -> normalize_opt(compress, Map);
        {error, {bad_option, {duplicate, K}, V}} -> {error, {bad_option, {duplicate, {compress, K}}, V}};
        {error, _} -> error
    end;
normalize_opt(proxy, P) ->
    ws_port_proxy:normalize(P);
normalize_opt(send_queue, N) when is_integer(N), N >= 0, N =< ?MAX_U32 -> {ok, N};
normalize_opt(driver, D) when is_atom(D), D =/= undefined; is_pid(D) -> {ok, D};
normalize_opt(await, B) when is_boolean(B) -> {ok, B};
normalize_opt(_, _) ->
    error.

normalize_compress([], Acc) ->
    {ok, Acc};
normalize_compress([{Key, V} | Rest], Acc) ->
    case valid_compress(Key, V) of
        true -> normalize_compress(Rest, Acc#{Key => V});
        false -> {error, {bad_option, {compress, Key}, V}}
    end.

%% zlib cannot deflate with a 256-byte window: client_max_window_bits >= 9
valid_compress(client_max_window_bits, true) -> true;
valid_compress(client_max_window_bits, N) -> is_integer(N) andalso N >= 9 andalso N =< 15;
valid_compress(server_max_window_bits, N) -> is_integer(N) andalso N >= 8 andalso N =< 15;
valid_compress(client_no_context_takeover, B) -> is_boolean(B);
valid_compress(server_no_context_takeover, B) -> is_boolean(B);
valid_compress(level, N) -> is_integer(N) andalso N >= 0 andalso N =< 9;
valid_compress(mem_level, N) -> is_integer(N) andalso N >= 1 andalso N =< 9;
valid_compress(threshold, N) -> is_integer(N) andalso N >= 0 andalso N =< ?MAX_U32;
valid_compress(_, _) -> false.

normalize_tls([], Acc) ->
    check_client_cert(Acc);
normalize_tls([{verify, V} | Rest], Acc) when V =:= verify_peer; V =:= verify_none ->
    normalize_tls(Rest, Acc#{verify => V});
normalize_tls([{Key, V} | Rest], Acc) when
    Key =:= cacertfile; Key =:= certfile; Key =:= keyfile; Key =:= server_name
->
    case to_binary(V) of
        {ok, Bin} when byte_size(Bin) > 0 ->
            case binary:match(Bin, <<0>>) of
                nomatch -> normalize_tls(Rest, Acc#{Key => Bin});
                _ -> {error, {bad_option, {tls, Key}, V}}
            end;
        _ ->
            {error, {bad_option, {tls, Key}, V}}
    end;
normalize_tls([{reuse_sessions, B} | Rest], Acc) when is_boolean(B) ->
    normalize_tls(Rest, Acc#{reuse_sessions => B});
normalize_tls([{server_name_indication, disable} | Rest], Acc) ->
    normalize_tls(Rest, Acc#{server_name_indication => disable});
normalize_tls([{pins, Pins} | Rest], Acc) when is_list(Pins), Pins =/= [], length(Pins) =< 64 ->
    case decode_pins(Pins, []) of
        {ok, Raw} -> normalize_tls(Rest, Acc#{pins => Raw});
        error -> {error, {bad_option, {tls, pins}, Pins}}
    end;
normalize_tls([{cacerts, Certs} | Rest], Acc) when
    is_list(Certs), Certs =/= [], length(Certs) =< 4096
->
    %% DER binaries, as public_key:cacerts_get/0 gives them (or
    %% #cert{der = DER} records of OTP's cacerts_get in OTP 26+)
    Ders = [der_of(C) || C <- Certs],
    case lists:all(fun(D) -> is_binary(D) andalso byte_size(D) > 0 end, Ders) of
        true -> normalize_tls(Rest, Acc#{cacerts => Ders});
        false -> {error, {bad_option, {tls, cacerts}, Certs}}
    end;
normalize_tls([{versions, Vs} | Rest], Acc) when is_list(Vs), Vs =/= [] ->
    case lists:all(fun(V) -> V =:= 'tlsv1.2' orelse V =:= 'tlsv1.3' end, Vs) of
        true -> normalize_tls(Rest, Acc#{versions => lists:usort(Vs)});
        false -> {error, {bad_option, {tls, versions}, Vs}}
    end;
normalize_tls([{Key, V} | Rest], Acc) when Key =:= ciphers; Key =:= ciphersuites ->
    %% an OpenSSL list "A:B" or a list of names
    Joined =
        case V of
            [C | _] when not is_integer(C) -> lists:join(":", V);
            _ -> V
        end,
    case to_binary(Joined) of
        {ok, Bin} when byte_size(Bin) > 0 ->
            case binary:match(Bin, <<0>>) of
                nomatch -> normalize_tls(Rest, Acc#{Key => Bin});
                _ -> {error, {bad_option, {tls, Key}, V}}
            end;
        _ ->
            {error, {bad_option, {tls, Key}, V}}
    end;
normalize_tls([{cert, V} | Rest], Acc) ->
    case client_cert(V) of
        {ok, Ders} -> normalize_tls(Rest, Acc#{cert => Ders});
        error -> {error, {bad_option, {tls, cert}, V}}
    end;
normalize_tls([{key, V} | Rest], Acc) ->
    case client_key(V) of
        {ok, Bin} -> normalize_tls(Rest, Acc#{key => secret(Bin)});
        error -> {error, {bad_option, {tls, key}, redacted}}
    end;
normalize_tls([{password, V} | Rest], Acc) ->
    case password(V) of
        {ok, Bin} -> normalize_tls(Rest, Acc#{password => secret(Bin)});
        error -> {error, {bad_option, {tls, password}, redacted}}
    end;
normalize_tls([{Key, V} | _], _) ->
    {error, {bad_option, {tls, Key}, shown_tls(Key, V)}}.

%% @doc Every key the `tls' option of ws_port:connect/2 takes (WsPort.Producer
%% checks its `:tls' against this list).
-spec tls_keys() -> [tls_key(), ...].
tls_keys() ->
    [
        verify,
        cacertfile,
        cacerts,
        certfile,
        keyfile,
        cert,
        key,
        password,
        server_name,
        server_name_indication,
        pins,
        versions,
        ciphers,
        ciphersuites
    ].

%% @doc The term with every secret in it replaced by `redacted': the proxy
%% password ({@link ws_port_proxy:scrub/1}) and the `key' and `password' of
%% `tls' options (maps, proplists, wire options), for crash reports and
%% `sys:get_status/1'.
-spec scrub(term()) -> term().
scrub(T) ->
    scrub_tls(ws_port_proxy:scrub(T)).

scrub_tls({K, _}) when K =:= key; K =:= password -> {K, redacted};
scrub_tls({tls, V}) -> {tls, scrub_tls_opts(V)};
scrub_tls(M) when is_map(M) ->
    maps:map(
        fun
            (tls, V) -> scrub_tls_opts(V);
            (_, V) -> scrub_tls(V)
        end,
        M
    );
scrub_tls([H | T]) ->
    [scrub_tls(H) | scrub_tls(T)];
scrub_tls(T) when is_tuple(T) -> list_to_tuple([scrub_tls(E) || E <- tuple_to_list(T)]);
scrub_tls(T) ->
    T.

scrub_tls_opts(M) when is_map(M) ->
    maps:map(
        fun
            (K, _) when K =:= key; K =:= password -> redacted;
            (_, V) -> V
        end,
        M
    );
scrub_tls_opts(V) ->
    scrub_tls(V).

%% The value of a tls option as an error shows it: never the key or the
%% password.
shown_tls(key, _) -> redacted;
shown_tls(password, _) -> redacted;
shown_tls(_, V) -> V.

%% @doc Connect options (a map, as given to ws_port:connect/2) with their
%% secrets kept as funs returning them, as normalize_connect_opts/1 keeps
%% them: the `tls' key and password, the `proxy' (a URL or map that may
%% hold credentials), and the value of every header in `headers' (an
%% `Authorization' or `Cookie'; the names stay readable). For processes that keep a user's options to connect
%% again later (ws_port_client, WsPort.Producer): their state, even as
%% `sys:get_state/1' returns it, then shows `#Fun<...>', never the bytes.
%% connect/2 takes the options as they are. A proplist keeps its order,
%% its other entries and anything else as they are (a child specification's
%% arguments, checked when the child starts).
-spec conceal(map()) -> map();
             (list()) -> list().
conceal(Opts) when is_map(Opts) ->
    maps:map(fun conceal_opt/2, Opts);
conceal(Opts) when is_list(Opts) ->
    [conceal_entry(E) || E <- Opts].

conceal_entry({K, V}) -> {K, conceal_opt(K, V)};
conceal_entry(E) -> E.

conceal_opt(tls, Tls) when is_map(Tls) ->
    maps:map(fun(K, V) -> element(2, conceal_tls({K, V})) end, Tls);
conceal_opt(tls, Tls) when is_list(Tls) ->
    [conceal_tls(E) || E <- Tls];
conceal_opt(proxy, P) when is_binary(P); is_list(P); is_map(P) ->
    secret(P);
conceal_opt(headers, Hs) when is_list(Hs) ->
    [conceal_header(H) || H <- Hs];
conceal_opt(_, V) ->
    V.

conceal_tls({K, V}) when K =:= key, not is_function(V); K =:= password, not is_function(V) ->
    {K, secret(V)};
conceal_tls(E) ->
    E.

conceal_header({Name, V}) when not is_function(V) ->
    {Name, secret(V)};
conceal_header(E) ->
    E.

%% The key and the password are kept as a fun returning them (as OTP's ssl
%% keeps its passwords): option maps and the driver's state print
%% `#Fun<...>', never the bytes. connect_cmd/3 takes them out.
secret(Bin) ->
    fun() -> Bin end.

%% A client certificate (cert or certfile) goes with a key (key or
%% keyfile); cert and certfile, key and keyfile exclude each other; a
%% password needs a key or keyfile.
check_client_cert(Tls) ->
    Cert = maps:is_key(cert, Tls),
    Key = maps:is_key(key, Tls),
    Checks = [
        {Cert andalso maps:is_key(certfile, Tls), cert},
        {Key andalso maps:is_key(keyfile, Tls), key},
        {Cert andalso not Key andalso not maps:is_key(keyfile, Tls), cert},
        {Key andalso not Cert andalso not maps:is_key(certfile, Tls), key},
        {maps:is_key(password, Tls) andalso not Key andalso not maps:is_key(keyfile, Tls),
            password}
    ],
    case [K || {true, K} <- Checks] of
        [] -> {ok, Tls};
        [K | _] -> {error, {bad_option, {tls, K}, shown_tls(K, maps:get(K, Tls))}}
    end.

%% cert: a DER certificate, a list of them (leaf first), or PEM with one
%% or more CERTIFICATE blocks (leaf first; other blocks and text around
%% them, as openssl's "Bag Attributes", are ignored). DER starts with a
%% SEQUENCE (0x30), PEM never. The
%% port program parses the X.509 (a bad one is a {tls, ...} failure);
%% here each must be one DER SEQUENCE.
client_cert(<<C, _/binary>> = Pem) when C =/= 16#30 ->
    case pem_blocks(Pem, [<<"CERTIFICATE">>]) of
        {ok, Blocks} when Blocks =/= [], length(Blocks) =< 16 ->
            der_list([Der || {_, Der} <- Blocks]);
        _ ->
            error
    end;
client_cert(Der) when is_binary(Der) ->
    der_list([Der]);
client_cert(Ders) when is_list(Ders), Ders =/= [], length(Ders) =< 16 ->
    der_list(Ders);
client_cert(_) ->
    error.

der_list(Ders) ->
    case lists:all(fun is_der_seq/1, Ders) of
        true -> {ok, Ders};
        false -> error
    end.

%% One DER SEQUENCE (definite length) filling the binary.
is_der_seq(<<16#30, 0:1, Len:7, Rest/binary>>) ->
    byte_size(Rest) =:= Len;
is_der_seq(<<16#30, 1:1, N:7, Rest/binary>>) when N >= 1, N =< 4 ->
    case Rest of
        <<Len:N/unit:8, Body/binary>> -> Len >= 128 andalso byte_size(Body) =:= Len;
        _ -> false
    end;
is_der_seq(_) ->
    false.

%% key: PEM (PKCS#1 RSA, SEC 1 EC, PKCS#8, encrypted PKCS#8 or an encrypted
%% traditional PEM) sent as its key block, a DER binary, or OTP ssl's
%% {KeyType, DER}; the port program decodes it.
-define(KEY_PEM_LABELS, [
    <<"RSA PRIVATE KEY">>, <<"EC PRIVATE KEY">>, <<"PRIVATE KEY">>, <<"ENCRYPTED PRIVATE KEY">>
]).
client_key(F) when is_function(F, 0) ->
    %% a fun returning the key (as normalize_connect_opts/1 keeps it)
    try F() of
        V when not is_function(V) -> client_key(V)
    catch
        _:_ -> error
    end;
client_key({Type, Der}) when
    Type =:= 'RSAPrivateKey'; Type =:= 'ECPrivateKey'; Type =:= 'PrivateKeyInfo'
->
    client_key_der(Der);
client_key(<<C, _/binary>> = Pem) when C =/= 16#30 ->
    case pem_blocks(Pem, ?KEY_PEM_LABELS) of
        {ok, [{Block, _}]} when byte_size(Block) =< 65536 -> {ok, Block};
        _ -> error
    end;
client_key(Der) ->
    client_key_der(Der).

client_key_der(Der) when is_binary(Der), byte_size(Der) =< 65536 ->
    case is_der_seq(Der) of
        true -> {ok, Der};
        false -> error
    end;
client_key_der(_) ->
    error.

%% password: a non-empty string or binary, or a fun returning one (called
%% here, in the caller, before anything goes to the port program)
password(F) when is_function(F, 0) ->
    try F() of
        V when not is_function(V) -> password(V)
    catch
        _:_ -> error
    end;
password(V) ->
    case to_binary(V) of
        {ok, Bin} when byte_size(Bin) > 0, byte_size(Bin) =< 1024 -> {ok, Bin};
        _ -> error
    end.

%% The PEM blocks whose label is in Labels: {Block, Der} with Block the
%% block's text (BEGIN to END line) and Der its base64 body decoded. A
%% block with another label is skipped; a malformed one is an error.
pem_blocks(Pem, Labels) ->
    pem_blocks(Pem, Labels, []).

pem_blocks(Pem, Labels, Acc) ->
    case binary:match(Pem, <<"-----BEGIN ">>) of
        nomatch ->
            {ok, lists:reverse(Acc)};
        {Start, _} ->
            From = binary:part(Pem, Start, byte_size(Pem) - Start),
            case binary:split(From, <<"-----">>, [global]) of
                [<<>>, <<"BEGIN ", Label/binary>>, Body, <<"END ", Label/binary>> | _] ->
                    BlockLen = 5 + 6 + byte_size(Label) + 5 + byte_size(Body) + 5 + 4 +
                        byte_size(Label) + 5,
                    <<Block:BlockLen/binary, After/binary>> = From,
                    case lists:member(Label, Labels) of
                        true ->
                            case pem_body(Body) of
                                {ok, Der} -> pem_blocks(After, Labels, [{Block, Der} | Acc]);
                                error -> error
                            end;
                        false ->
                            pem_blocks(After, Labels, Acc)
                    end;
                _ ->
                    error
            end
    end.

%% The base64 body, or (an encrypted traditional PEM) headers, a blank
%% line, then base64: the DER is that of the body after the headers.
pem_body(Body) ->
    Lines = [L || L <- binary:split(Body, [<<"\r\n">>, <<"\n">>], [global]), L =/= <<>>],
    B64 = [L || L <- Lines, binary:match(L, <<":">>) =:= nomatch],
    Bin = binary:replace(iolist_to_binary(B64), [<<" ">>, <<"\t">>, <<"\r">>], <<>>, [global]),
    try base64:decode(Bin) of
        <<>> -> error;
        Der -> {ok, Der}
    catch
        _:_ -> error
    end.

der_of(B) when is_binary(B) -> B;
der_of({cert, Der, _}) when is_binary(Der) -> Der;
der_of(_) -> bad.

%% pins: base64 of the SHA-256 of a SubjectPublicKeyInfo (as HPKP and
%% OkHttp write them, "sha256/" prefix allowed); sent raw (32 bytes)
decode_pins([], Acc) ->
    {ok, lists:reverse(Acc)};
decode_pins([P | Rest], Acc) ->
    case to_binary(P) of
        {ok, <<"sha256/", B64/binary>>} -> decode_pin(B64, Rest, Acc);
        {ok, B64} -> decode_pin(B64, Rest, Acc);
        error -> error
    end.

decode_pin(B64, Rest, Acc) ->
    try base64:decode(B64) of
        <<_:256>> = Raw -> decode_pins(Rest, [Raw | Acc]);
        _ -> error
    catch
        _:_ -> error
    end.

normalize_retry([], Acc) ->
    {ok, Acc};
normalize_retry([{jitter_fraction, V} | Rest], Acc) ->
    case valid_retry(jitter, V) of
        true -> normalize_retry(Rest, Acc#{jitter => V});
        false -> {error, {bad_option, {retry, jitter_fraction}, V}}
    end;
normalize_retry([{Key, V} | Rest], Acc) ->
    case valid_retry(Key, V) of
        true -> normalize_retry(Rest, Acc#{Key => V});
        false -> {error, {bad_option, {retry, Key}, V}}
    end.

valid_retry(max_retries, infinity) -> true;
valid_retry(max_retries, N) -> is_integer(N) andalso N >= 0 andalso N < 1 bsl 63;
valid_retry(delay, Ms) -> is_integer(Ms) andalso Ms >= 0 andalso Ms =< ?MAX_U32;
valid_retry(max_delay, Ms) -> is_integer(Ms) andalso Ms >= 0 andalso Ms =< ?MAX_U32;
valid_retry(backoff_factor, X) -> is_number(X) andalso X >= 1 andalso X =< 1000;
valid_retry(jitter, full) -> true;
valid_retry(jitter, equal) -> true;
valid_retry(jitter, X) -> is_number(X) andalso X >= 0 andalso X =< 1;
valid_retry(manual, B) -> is_boolean(B);
valid_retry(_, _) -> false.

%% A header: name is an HTTP token, value has no CR, LF or NUL, or a fun
%% returning such a value (as conceal/1 keeps it: called here, in the
%% caller). The handshake's own headers cannot be given (the port program
%% writes them).
normalize_header({Name, F}) when is_function(F, 0) ->
    try F() of
        V when not is_function(V) -> normalize_header({Name, V});
        _ -> error
    catch
        _:_ -> error
    end;
normalize_header({Name, Value}) ->
    case {normalize_token(Name), to_header_value(Value)} of
        {{ok, N}, {ok, V}} ->
            case lists:member(string:lowercase(N), handshake_headers()) of
                false -> {ok, {N, V}};
                true -> error
            end;
        _ ->
            error
    end;
normalize_header(_) ->
    error.

%% The request headers the port program sets itself (c_src/ws_codec.c):
%% Sec-WebSocket-Protocol comes from `protocols' and Sec-WebSocket-Extensions
%% from `compress'; given as headers they would be sent twice, or offer an
%% extension the port program would then refuse in the server's answer.
handshake_headers() ->
    [
        <<"host">>,
        <<"upgrade">>,
        <<"connection">>,
        <<"sec-websocket-key">>,
        <<"sec-websocket-version">>,
        <<"sec-websocket-protocol">>,
        <<"sec-websocket-extensions">>
    ].

normalize_token(T) ->
    case to_binary(T) of
        {ok, Bin} when byte_size(Bin) > 0 ->
            case is_token(Bin) of
                true -> {ok, Bin};
                false -> error
            end;
        _ ->
            error
    end.

%% RFC 7230 token characters.
is_token(<<>>) ->
    true;
is_token(<<C, Rest/binary>>) when
    C >= $a, C =< $z; C >= $A, C =< $Z; C >= $0, C =< $9
->
    is_token(Rest);
is_token(<<C, Rest/binary>>) ->
    case lists:member(C, "!#$%&'*+-.^_`|~") of
        true -> is_token(Rest);
        false -> false
    end.

to_header_value(V) when is_integer(V) ->
    {ok, integer_to_binary(V)};
to_header_value(V) ->
    case to_binary(V) of
        {ok, Bin} ->
            case binary:match(Bin, [<<"\r">>, <<"\n">>, <<0>>]) of
                nomatch -> {ok, Bin};
                _ -> error
            end;
        error ->
            error
    end.

map_list(F, L) when is_list(L) ->
    map_list(F, L, []);
map_list(_, _) ->
    error.

map_list(_, [], Acc) ->
    {ok, lists:reverse(Acc)};
map_list(F, [X | Rest], Acc) ->
    case F(X) of
        {ok, Y} -> map_list(F, Rest, [Y | Acc]);
        error -> error
    end;
map_list(_, _Improper, _) ->
    error.

%% @doc Options given as a map or a proplist, as a map: a bare atom `A'
%% means `{A, true}'; a name given twice is `{error, {bad_option,
%% {duplicate, Name}, SecondValue}}', an entry that is not `{atom(), term()}'
%% or an atom `{error, {bad_option, Entry, undefined}}', anything else
%% `{error, {bad_option, opts, Opts}}'.
-spec options_map(term()) -> {ok, map()} | {error, {bad_option, term(), term()}}.
options_map(Opts) when is_map(Opts) ->
    {ok, Opts};
options_map(Opts) when is_list(Opts) ->
    proplist_to_map(Opts);
options_map(Opts) ->
    {error, {bad_option, opts, Opts}}.

proplist_to_map(L) ->
    proplist_to_map(L, #{}).

proplist_to_map([], Acc) ->
    {ok, Acc};
proplist_to_map([{K, V} | _], Acc) when is_atom(K), is_map_key(K, Acc) ->
    {error, {bad_option, {duplicate, K}, V}};
proplist_to_map([{K, V} | Rest], Acc) when is_atom(K) ->
    proplist_to_map(Rest, Acc#{K => V});
proplist_to_map([K | Rest], Acc) when is_atom(K) ->
    proplist_to_map([{K, true} | Rest], Acc);
proplist_to_map([Bad | _], _) ->
    {error, {bad_option, Bad, undefined}};
proplist_to_map(Bad, _) ->
    {error, {bad_option, opts, Bad}}.

to_binary(B) when is_binary(B) ->
    {ok, B};
to_binary(A) when is_atom(A) ->
    {ok, atom_to_binary(A, utf8)};
to_binary(L) when is_list(L) ->
    try unicode:characters_to_binary(L) of
        B when is_binary(B) -> {ok, B};
        _ -> error
    catch
        error:_ -> error
    end;
to_binary(_) ->
    error.

%% @doc The options of the `connect' command sent to the port program, from
%% normalised options: BEAM-only options (`driver', `await', `retry_fun',
%% `retry_state') are dropped and
%% the `tls' map is flattened into its keys (`verify', `cacertfile',
%% `certfile', `keyfile', `cert', `key', `password', `server_name', ...;
%% `key' and `password' still as funs: connect_cmd/3 takes them out). The
%% order is stable (sorted by name).
-spec wire_opts(opts()) -> [wire_opt()].
wire_opts(Opts) ->
    lists:sort(maps:fold(fun wire_opt/3, [], Opts)).

wire_opt(driver, _, Acc) -> Acc;
wire_opt(await, _, Acc) -> Acc;
wire_opt(retry_fun, _, Acc) -> Acc;
wire_opt(retry_state, _, Acc) -> Acc;
wire_opt(tls, Tls, Acc) -> maps:to_list(Tls) ++ Acc;
wire_opt(retry, false, Acc) -> [{retry, false} | Acc];
wire_opt(compress, false, Acc) -> Acc;
wire_opt(compress, C, Acc) -> [{compress, lists:sort(maps:to_list(C))} | Acc];
wire_opt(proxy, none, Acc) -> Acc;
%% resolved by ws_port_driver before (ws_port_proxy:resolve/2)
wire_opt(proxy, system, Acc) -> Acc;
wire_opt(proxy, Proxy, Acc) ->
    %% the password as a fun too: the driver's state keeps the wire options
    {T, H, P, U, Pw} = ws_port_proxy:wire(Proxy),
    [{proxy, {T, H, P, U, secret(Pw)}} | Acc];
%% header values as funs too (an Authorization): the driver's state keeps
%% the wire options
wire_opt(headers, Hs, Acc) -> [{headers, [{N, secret(V)} || {N, V} <- Hs]} | Acc];
wire_opt(retry, Retry, Acc) -> [{retry, lists:sort(maps:to_list(Retry))} | Acc];
wire_opt(Name, Value, Acc) -> [{Name, Value} | Acc].

%%====================================================================
%% Commands
%%====================================================================

%% @doc `{connect, Id, Url, Opts}' as a packet.
-spec connect_cmd(id(), binary(), [wire_opt()]) -> binary().
connect_cmd(Id, Url, WireOpts) ->
    term_to_binary({connect, Id, Url, [reveal(O) || O <- WireOpts]}).

%% The key and password as the port program reads them (binaries).
reveal({K, F}) when is_function(F, 0), K =:= key; is_function(F, 0), K =:= password -> {K, F()};
reveal({proxy, {T, H, P, U, F}}) when is_function(F, 0) -> {proxy, {T, H, P, U, F()}};
reveal({headers, Hs}) -> {headers, [{N, reveal_value(V)} || {N, V} <- Hs]};
reveal(O) -> O.

reveal_value(F) when is_function(F, 0) -> F();
reveal_value(V) -> V.

%% @doc `{reconnect, Id, DelayMs}' as a packet (manual retry mode).
-spec reconnect_cmd(id(), non_neg_integer()) -> binary().
reconnect_cmd(Id, DelayMs) ->
    term_to_binary({reconnect, Id, DelayMs}).

%% @doc A raw send command: `<<1, Id:32, Opcode:8, Payload/binary>>'.
-spec send_cmd(id(), frame_type(), iodata()) -> iodata().
send_cmd(Id, Type, Data) ->
    [<<?RAW_SEND, Id:32, (opcode(Type))>> | Data].

%% @doc `{close, Id, Code, Reason}' as a packet.
-spec close_cmd(id(), 1000..4999, binary()) -> binary().
close_cmd(Id, Code, Reason) ->
    term_to_binary({close, Id, Code, Reason}).

%% @doc `{active, Id, Active}' as a packet.
-spec active_cmd(id(), active()) -> binary().
active_cmd(Id, Active) ->
    term_to_binary({active, Id, Active}).

%% @doc `{stats, Id}' as a packet.
%% (`{stats, 0}' asks for the port program's own figures.)
-spec stats_cmd(id() | 0) -> binary().
stats_cmd(Id) ->
    term_to_binary({stats, Id}).

%% @doc The opcode of a frame type in a raw send command.
-spec opcode(frame_type()) -> 1 | 2 | 9 | 10.
opcode(text) -> 1;
opcode(binary) -> 2;
opcode(ping) -> 9;
opcode(pong) -> 10.

%% @doc Checks an `{active, _}' value (gen_tcp's, with a 32-bit integer).
-spec validate_active(term()) -> ok | error.
validate_active(A) when is_boolean(A); A =:= once -> ok;
validate_active(N) when is_integer(N), N >= ?MIN_ACTIVE, N =< ?MAX_ACTIVE -> ok;
validate_active(_) -> error.

%% @doc Checks and normalises the arguments of a close: the code is one a
%% client may send (RFC 6455 7.4: 1000-1003, 1007-1014, 3000-4999) and the
%% reason is at most 123 bytes of UTF-8. `{error, code | reason}' names the
%% argument at fault.
-spec validate_close(term(), term()) -> {ok, 1000..4999, binary()} | {error, code | reason}.
validate_close(Code, Reason) ->
    Reserved = [1004, 1005, 1006],
    case
        is_integer(Code) andalso
            ((Code >= 1000 andalso Code =< 1014 andalso not lists:member(Code, Reserved)) orelse
                (Code >= 3000 andalso Code =< 4999))
    of
        true ->
            case to_binary(Reason) of
                {ok, Bin} when byte_size(Bin) =< 123 ->
                    case unicode:characters_to_binary(Bin, utf8, utf8) of
                        Bin -> {ok, Code, Bin};
                        _ -> {error, reason}
                    end;
                _ ->
                    {error, reason}
            end;
        false ->
            {error, code}
    end.

%%====================================================================
%% Events
%%====================================================================

%% @doc Splits a data event `<<1, Entry+>>' into its messages. Payloads are
%% sub-binaries of the packet (no copy). Returns `error' if the packet is
%% malformed (then nothing of it should be delivered).
%%
%% The driver does not call this on its hot path (it delivers while it
%% walks the packet); this is the reference the tests check it against.
-spec decode_data(binary()) -> {ok, [data_entry()]} | error.
decode_data(<<?RAW_DATA, Entries/binary>>) when byte_size(Entries) > 0 ->
    decode_entries(Entries, []);
decode_data(_) ->
    error.

decode_entries(<<>>, Acc) ->
    {ok, lists:reverse(Acc)};
decode_entries(<<Id:32, 1, Len:32, Payload:Len/binary, Rest/binary>>, Acc) when Id > 0 ->
    decode_entries(Rest, [{Id, text, Payload} | Acc]);
decode_entries(<<Id:32, 2, Len:32, Payload:Len/binary, Rest/binary>>, Acc) when Id > 0 ->
    decode_entries(Rest, [{Id, binary, Payload} | Acc]);
decode_entries(_, _) ->
    error.
