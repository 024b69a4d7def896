%% EUnit tests of the pure parts of the BEAM side: URL and option
%% validation, wire options, command encoding, data packet decoding.
-module(ws_port_tests).

-include_lib("eunit/include/eunit.hrl").

-define(P, ws_port_proto).

%%====================================================================
%% URL
%%====================================================================

url_test_() ->
    [
        ?_assertEqual({ok, <<"ws://a/">>}, ?P:normalize_url("ws://a/")),
        ?_assertEqual({ok, <<"wss://a:443/x?y">>}, ?P:normalize_url(<<"wss://a:443/x?y">>)),
        ?_assertEqual({ok, <<"WSS://A/">>}, ?P:normalize_url("WSS://A/")),
        ?_assertEqual({ok, <<"Ws://a">>}, ?P:normalize_url(<<"Ws://a">>)),
        ?_assertEqual({ok, <<"ws://h/é"/utf8>>}, ?P:normalize_url("ws://h/é")),
        ?_assertMatch({error, {invalid_url, _}}, ?P:normalize_url("http://a/")),
        ?_assertMatch({error, {invalid_url, _}}, ?P:normalize_url("wss:/a")),
        ?_assertMatch({error, {invalid_url, _}}, ?P:normalize_url("ws")),
        ?_assertMatch({error, {invalid_url, _}}, ?P:normalize_url(<<>>)),
        ?_assertMatch({error, {invalid_url, _}}, ?P:normalize_url(42)),
        ?_assertMatch({error, {invalid_url, _}}, ?P:normalize_url([-1]))
    ].

%%====================================================================
%% Options
%%====================================================================

defaults_test() ->
    Defaults = #{
        connect_timeout => 15000, active => true, await => true, retry => ?P:default_retry()
    },
    ?assertEqual({ok, Defaults}, ?P:normalize_connect_opts(#{})),
    ?assertEqual({ok, Defaults}, ?P:normalize_connect_opts([])),
    ?assertEqual(
        [{active, true}, {connect_timeout, 15000}, {retry, lists:sort(maps:to_list(?P:default_retry()))}],
        ?P:wire_opts(Defaults)
    ).

proplist_test() ->
    {ok, O} = ?P:normalize_connect_opts([{active, 3}, {await, false}]),
    ?assertMatch(#{active := 3, await := false}, O),
    %% an option given twice is refused, naming it and the second value
    ?assertEqual(
        {error, {bad_option, {duplicate, active}, 3}},
        ?P:normalize_connect_opts([{active, once}, {await, false}, {active, 3}])
    ),
    ?assertEqual({error, {bad_option, {duplicate, await}, true}}, ?P:normalize_connect_opts([await, await])),
    %% a connection starts with a credit of N >= 0
    ?assertEqual({error, {bad_option, active, -3}}, ?P:normalize_connect_opts([{active, -3}])),
    ?assertMatch({ok, #{active := 0}}, ?P:normalize_connect_opts([{active, 0}])),
    %% a bare atom means {Atom, true}
    ?assertMatch({ok, #{await := true}}, ?P:normalize_connect_opts([await])),
    ?assertEqual({error, {bad_option, "x", undefined}}, ?P:normalize_connect_opts(["x"])),
    ?assertEqual({error, {bad_option, opts, 42}}, ?P:normalize_connect_opts(42)),
    ?assertEqual({error, {bad_option, opts, x}}, ?P:normalize_connect_opts([{a, 1} | x])).

headers_test() ->
    {ok, O} = ?P:normalize_connect_opts(#{
        headers => [
            {<<"Authorization">>, <<"Bearer x">>},
            {"x-str", "välue"},
            {'X-Atom', value},
            {"x-int", 42}
        ]
    }),
    ?assertEqual(
        [
            {<<"Authorization">>, <<"Bearer x">>},
            {<<"x-str">>, <<"välue"/utf8>>},
            {<<"X-Atom">>, <<"value">>},
            {<<"x-int">>, <<"42">>}
        ],
        maps:get(headers, O)
    ),
    Bad = fun(H) -> ?P:normalize_connect_opts(#{headers => H}) end,
    ?assertEqual({error, {bad_option, headers, x}}, Bad(x)),
    ?assertEqual({error, {bad_option, headers, [x]}}, Bad([x])),
    ?assertEqual({error, {bad_option, headers, [{"a b", "c"}]}}, Bad([{"a b", "c"}])),
    ?assertEqual({error, {bad_option, headers, [{"", "c"}]}}, Bad([{"", "c"}])),
    ?assertEqual({error, {bad_option, headers, [{"a:", "c"}]}}, Bad([{"a:", "c"}])),
    %% no header injection
    ?assertEqual({error, {bad_option, headers, [{"a", "c\r\nx: y"}]}}, Bad([{"a", "c\r\nx: y"}])),
    ?assertEqual({error, {bad_option, headers, [{"a", <<"c\n">>}]}}, Bad([{"a", <<"c\n">>}])),
    ?assertEqual({error, {bad_option, headers, [{"a", <<0>>}]}}, Bad([{"a", <<0>>}])),
    ?assertEqual({error, {bad_option, headers, [{"a", 1.5}]}}, Bad([{"a", 1.5}])),
    ?assertMatch({ok, #{headers := []}}, ?P:normalize_connect_opts(#{headers => []})).

%% Header values (an Authorization) are kept as funs by conceal/1 and in the
%% wire options the driver keeps; normalize takes them as given or as funs,
%% and only the connect command carries the bytes.
headers_concealed_test() ->
    Given = #{headers => [{"Authorization", "Bearer s3cret"}, {<<"X-N">>, 7}]},
    Concealed = ?P:conceal(Given),
    Shown = lists:flatten(io_lib:format("~p", [Concealed])),
    ?assertEqual(nomatch, string:find(Shown, "s3cret")),
    ?assertMatch(#{headers := [{"Authorization", F}, {<<"X-N">>, _}]} when is_function(F, 0), Concealed),
    %% concealing twice changes nothing; a malformed entry is left for
    %% normalize to name
    ?assertEqual(Concealed, ?P:conceal(Concealed)),
    ?assertEqual(#{headers => [x]}, ?P:conceal(#{headers => [x]})),
    {ok, O} = ?P:normalize_connect_opts(Concealed),
    ?assertEqual([{<<"Authorization">>, <<"Bearer s3cret">>}, {<<"X-N">>, <<"7">>}], maps:get(headers, O)),
    {headers, WireHs} = lists:keyfind(headers, 1, ?P:wire_opts(O)),
    ?assert(lists:all(fun({_, V}) -> is_function(V, 0) end, WireHs)),
    ?assertEqual(nomatch, string:find(lists:flatten(io_lib:format("~p", [WireHs])), "s3cret")),
    %% equal options give equal wire options (the driver shares them)
    ?assertEqual(?P:wire_opts(O), ?P:wire_opts(O)),
    {connect, 1, _, Sent} = binary_to_term(?P:connect_cmd(1, <<"ws://h">>, ?P:wire_opts(O))),
    ?assertEqual(
        {headers, [{<<"Authorization">>, <<"Bearer s3cret">>}, {<<"X-N">>, <<"7">>}]},
        lists:keyfind(headers, 1, Sent)
    ),
    %% a fun's value is checked as a value is; a failing fun is a bad option
    Bad = fun(H) -> ?P:normalize_connect_opts(#{headers => H}) end,
    Inject = [{"a", fun() -> "c\r\nx: y" end}],
    ?assertEqual({error, {bad_option, headers, Inject}}, Bad(Inject)),
    Raises = [{"a", fun() -> error(boom) end}],
    ?assertEqual({error, {bad_option, headers, Raises}}, Bad(Raises)),
    Nested = [{"a", fun() -> fun() -> "v" end end}],
    ?assertEqual({error, {bad_option, headers, Nested}}, Bad(Nested)).

protocols_test() ->
    ?assertMatch(
        {ok, #{protocols := [<<"chat">>, <<"v2.json">>, <<"mqtt">>]}},
        ?P:normalize_connect_opts(#{protocols => [<<"chat">>, "v2.json", mqtt]})
    ),
    ?assertEqual(
        {error, {bad_option, protocols, [<<"a,b">>]}},
        ?P:normalize_connect_opts(#{protocols => [<<"a,b">>]})
    ),
    ?assertEqual(
        {error, {bad_option, protocols, <<"chat">>}},
        ?P:normalize_connect_opts(#{protocols => <<"chat">>})
    ).

integers_test_() ->
    Ok = fun(Name, V) -> ?_assertMatch({ok, #{Name := V}}, ?P:normalize_connect_opts(#{Name => V})) end,
    Bad = fun(Name, V) ->
        ?_assertEqual({error, {bad_option, Name, V}}, ?P:normalize_connect_opts(#{Name => V}))
    end,
    [
        Ok(connect_timeout, 1),
        Ok(connect_timeout, 4294967295),
        Bad(connect_timeout, 0),
        Bad(connect_timeout, -1),
        Bad(connect_timeout, 4294967296),
        Bad(connect_timeout, infinity),
        Bad(connect_timeout, 1.0),
        Ok(max_message_size, 1),
        Ok(max_message_size, 4294967279),
        Bad(max_message_size, 4294967280),
        %% the wire carries a message's length in 32 bits
        Bad(max_message_size, 1 bsl 40),
        Bad(max_message_size, 0),
        Ok(ping_interval, 0),
        Ok(ping_interval, 30000),
        Bad(ping_interval, -1),
        Ok(idle_timeout, 0),
        Bad(idle_timeout, "1000"),
        Ok(active, true),
        Ok(active, false),
        Ok(active, once),
        %% a connection starts with a credit of N >= 0 (negative N: setopts only)
        Bad(active, -5),
        Ok(active, 0),
        Ok(active, 2147483647),
        Bad(active, 2147483648),
        Bad(active, twice),
        Ok(await, false),
        Bad(await, yes),
        Ok(driver, my_driver),
        Ok(driver, self()),
        Bad(driver, undefined),
        Bad(driver, "name"),
        Bad(nonsense, 1)
    ].

tls_test() ->
    {ok, O} = ?P:normalize_connect_opts(#{
        tls => #{
            verify => verify_none,
            cacertfile => "/tmp/ca.pem",
            certfile => <<"/tmp/c.pem">>,
            keyfile => "/tmp/k.pem",
            server_name => "example.com"
        },
        driver => d,
        await => false,
        ping_interval => 5,
        retry => false
    }),
    ?assertEqual(
        [
            {active, true},
            {cacertfile, <<"/tmp/ca.pem">>},
            {certfile, <<"/tmp/c.pem">>},
            {connect_timeout, 15000},
            {keyfile, <<"/tmp/k.pem">>},
            {ping_interval, 5},
            {retry, false},
            {server_name, <<"example.com">>},
            {verify, verify_none}
        ],
        ?P:wire_opts(O)
    ),
    %% a proplist works too
    ?assertMatch(
        {ok, #{tls := #{verify := verify_peer}}},
        ?P:normalize_connect_opts([{tls, [{verify, verify_peer}]}])
    ),
    ?assertEqual(
        {error, {bad_option, {tls, verify}, maybe}},
        ?P:normalize_connect_opts(#{tls => #{verify => maybe}})
    ),
    %% an unknown key (`ciphers' is a known one since issue 14)
    ?assertEqual(
        {error, {bad_option, {tls, honor_cipher_order}, true}},
        ?P:normalize_connect_opts(#{tls => #{honor_cipher_order => true}})
    ),
    ?assertEqual(
        {error, {bad_option, {tls, ciphers}, ""}},
        ?P:normalize_connect_opts(#{tls => #{ciphers => ""}})
    ),
    ?assertEqual(
        {error, {bad_option, {tls, cacertfile}, ""}},
        ?P:normalize_connect_opts(#{tls => #{cacertfile => ""}})
    ),
    ?assertEqual(
        {error, {bad_option, {tls, keyfile}, <<"a", 0>>}},
        ?P:normalize_connect_opts(#{tls => #{keyfile => <<"a", 0>>}})
    ),
    ?assertEqual({error, {bad_option, tls, 1}}, ?P:normalize_connect_opts(#{tls => 1})),
    ?assertEqual({error, {bad_option, tls, [1]}}, ?P:normalize_connect_opts(#{tls => [1]})).

%% cert / key / password: shapes checked here (the port program parses the
%% X.509 and the key); the key and password kept as funs, revealed only in
%% the connect command; never in an error.
tls_client_cert_test() ->
    %% a DER-shaped certificate (SEQUENCE of 3 bytes) and key (long form)
    Der = <<16#30, 3, 2, 1, 1>>,
    KeyDer = <<16#30, 16#81, 128, (binary:copy(<<1>>, 128))/binary>>,
    B64 = base64:encode(Der),
    %% text around the block (openssl's Bag Attributes), CRLF line ends,
    %% a key block after it ignored for cert, two certificates kept in order
    Pem = <<"Bag Attributes\r\n    friendlyName: x\r\n-----BEGIN CERTIFICATE-----\r\n", B64/binary,
        "\r\n-----END CERTIFICATE-----\r\n-----BEGIN CERTIFICATE-----\n", B64/binary,
        "\n-----END CERTIFICATE-----\n">>,
    KeyBlock = <<"-----BEGIN PRIVATE KEY-----\n", (base64:encode(KeyDer))/binary,
        "\n-----END PRIVATE KEY-----">>,
    KeyPem = <<"junk before\n", KeyBlock/binary, "\ntrailing\n">>,
    {ok, O} = ?P:normalize_connect_opts(#{
        tls => #{cert => Pem, key => KeyPem, password => fun() -> "pw" end}
    }),
    Wire = ?P:wire_opts(O),
    ?assertEqual({cert, [Der, Der]}, lists:keyfind(cert, 1, Wire)),
    {key, KF} = lists:keyfind(key, 1, Wire),
    ?assert(is_function(KF, 0)),
    {connect, 1, <<"wss://h">>, Sent} =
        binary_to_term(?P:connect_cmd(1, <<"wss://h">>, Wire)),
    %% only the key block goes to the port program
    ?assertEqual({key, KeyBlock}, lists:keyfind(key, 1, Sent)),
    ?assertEqual({password, <<"pw">>}, lists:keyfind(password, 1, Sent)),
    %% DER forms
    Ok = fun(Tls) -> element(1, ?P:normalize_connect_opts(#{tls => Tls})) end,
    ?assertEqual(ok, Ok(#{cert => Der, key => KeyDer})),
    ?assertEqual(ok, Ok(#{cert => [Der, Der], key => {'PrivateKeyInfo', KeyDer}})),
    ?assertEqual(ok, Ok(#{cert => Der, key => {'ECPrivateKey', KeyDer}})),
    ?assertEqual(ok, Ok(#{certfile => "/c", key => {'RSAPrivateKey', KeyDer}})),
    ?assertEqual(ok, Ok(#{cert => Der, keyfile => "/k", password => <<"p">>})),
    Err = fun(Tls) -> ?P:normalize_connect_opts(#{tls => Tls}) end,
    %% a DER whose length does not fill the binary, a list too long
    ?assertEqual(
        {error, {bad_option, {tls, cert}, <<16#30, 4, 1>>}},
        Err(#{cert => <<16#30, 4, 1>>, key => KeyDer})
    ),
    ?assertMatch(
        {error, {bad_option, {tls, cert}, _}}, Err(#{cert => lists:duplicate(17, Der), key => KeyDer})
    ),
    ?assertMatch({error, {bad_option, {tls, cert}, _}}, Err(#{cert => [], key => KeyDer})),
    %% a PEM with no certificate in it
    ?assertMatch({error, {bad_option, {tls, cert}, _}}, Err(#{cert => KeyPem, key => KeyDer})),
    %% keys: never shown
    R = {error, {bad_option, {tls, key}, redacted}},
    ?assertEqual(R, Err(#{cert => Der, key => <<"secret">>})),
    ?assertEqual(R, Err(#{cert => Der, key => {'DSAPrivateKey', KeyDer}})),
    ?assertEqual(R, Err(#{cert => Der, key => {'PrivateKeyInfo', <<"secret">>}})),
    ?assertEqual(R, Err(#{cert => Der, key => <<KeyBlock/binary, KeyBlock/binary>>})),
    ?assertEqual(R, Err(#{key => KeyDer})),
    ?assertEqual(R, Err(#{cert => Der, keyfile => "/k", key => KeyDer})),
    ?assertEqual({error, {bad_option, {tls, cert}, [Der]}}, Err(#{cert => Der})),
    ?assertEqual(
        {error, {bad_option, {tls, cert}, [Der]}}, Err(#{cert => Der, certfile => "/c", key => KeyDer})
    ),
    P = {error, {bad_option, {tls, password}, redacted}},
    ?assertEqual(P, Err(#{password => "secret"})),
    ?assertEqual(P, Err(#{cert => Der, key => KeyDer, password => fun() -> 1 end})),
    ?assertEqual(P, Err(#{cert => Der, key => KeyDer, password => fun() -> exit(no) end})),
    ?assertEqual(P, Err(#{cert => Der, key => KeyDer, password => binary:copy(<<"p">>, 1025)})),
    %% the list of keys WsPort.Producer checks against
    ?assertEqual(
        [cacertfile, cacerts, cert, certfile, ciphers, ciphersuites, key, keyfile, password, pins] ++
            [server_name, server_name_indication, verify, versions],
        lists:sort(?P:tls_keys())
    ).

scrub_test() ->
    ?assertEqual(
        #{tls => #{key => redacted, password => redacted, cert => <<"c">>}, other => {key, redacted}},
        ?P:scrub(#{tls => #{key => <<"k">>, password => "p", cert => <<"c">>}, other => {key, <<"k">>}})
    ),
    ?assertEqual(
        [{tls, [{key, redacted}, {password, redacted}]}, {proxy, {http, <<"h">>, 1, <<"u">>, redacted}}],
        ?P:scrub([{tls, [{key, <<"k">>}, {password, "p"}]}, {proxy, {http, <<"h">>, 1, <<"u">>, <<"pw">>}}])
    ).

compress_test() ->
    {ok, O} = ?P:normalize_connect_opts(#{
        compress => [server_no_context_takeover, {client_max_window_bits, 10}, {threshold, 0}]
    }),
    ?assertEqual(
        #{server_no_context_takeover => true, client_max_window_bits => 10, threshold => 0},
        maps:get(compress, O)
    ),
    ?assertEqual(
        {compress, [{client_max_window_bits, 10}, {server_no_context_takeover, true}, {threshold, 0}]},
        lists:keyfind(compress, 1, ?P:wire_opts(O))
    ),
    {ok, T} = ?P:normalize_connect_opts(#{compress => true}),
    ?assertEqual({compress, []}, lists:keyfind(compress, 1, ?P:wire_opts(T))),
    {ok, F} = ?P:normalize_connect_opts(#{compress => false}),
    ?assertEqual(false, lists:keyfind(compress, 1, ?P:wire_opts(F))),
    Bad = [
        {client_max_window_bits, 8},
        {client_max_window_bits, 16},
        {server_max_window_bits, 7},
        {server_max_window_bits, true},
        {server_no_context_takeover, 1},
        {level, 10},
        {mem_level, 0},
        {threshold, -1},
        {window, 10}
    ],
    [
        ?assertEqual(
            {error, {bad_option, {compress, K}, V}},
            ?P:normalize_connect_opts(#{compress => #{K => V}})
        )
     || {K, V} <- Bad
    ],
    ?assertEqual({error, {bad_option, compress, maybe}}, ?P:normalize_connect_opts(#{compress => maybe})),
    ?assertEqual(
        {error, {bad_option, {duplicate, {compress, level}}, 2}},
        ?P:normalize_connect_opts(#{compress => [{level, 1}, {level, 2}]})
    ).

retry_test() ->
    {ok, O} = ?P:normalize_connect_opts(#{
        retry => [{max_retries, 3}, {delay, 10}, {backoff_factor, 1.5}, {jitter, 0}],
        retry_on => [network, http_5xx],
        send_queue => 100
    }),
    ?assertEqual(
        [
            {active, true},
            {connect_timeout, 15000},
            {retry, [
                {backoff_factor, 1.5}, {delay, 10}, {jitter, 0}, {max_delay, 30000}, {max_retries, 3}
            ]},
            {retry_on, [network, http_5xx]},
            {send_queue, 100}
        ],
        ?P:wire_opts(O)
    ),
    ?assertMatch({ok, #{retry := #{delay := 1000}}}, ?P:normalize_connect_opts(#{retry => true})),
    ?assertEqual(
        [{retry, lists:sort(maps:to_list(?P:default_retry()))}],
        [W || {retry, _} = W <- wire(#{retry => true})]
    ),
    ?assertEqual([{retry, false}], [W || {retry, _} = W <- wire(#{retry => false})]),
    ?assertMatch(
        {ok, #{retry := #{max_retries := infinity, manual := true, max_delay := 0}}},
        ?P:normalize_connect_opts(#{retry => #{max_retries => infinity, manual => true, max_delay => 0}})
    ),
    Bad = fun(K, V) -> ?P:normalize_connect_opts(#{retry => #{K => V}}) end,
    ?assertEqual({error, {bad_option, {retry, max_retries}, -1}}, Bad(max_retries, -1)),
    ?assertEqual({error, {bad_option, {retry, delay}, 1.5}}, Bad(delay, 1.5)),
    ?assertEqual({error, {bad_option, {retry, backoff_factor}, 0.5}}, Bad(backoff_factor, 0.5)),
    ?assertEqual({error, {bad_option, {retry, jitter}, 2}}, Bad(jitter, 2)),
    ?assertEqual({error, {bad_option, {retry, manual}, yes}}, Bad(manual, yes)),
    ?assertEqual({error, {bad_option, {retry, forever}, true}}, Bad(forever, true)),
    ?assertEqual({error, {bad_option, retry, 3}}, ?P:normalize_connect_opts(#{retry => 3})),
    ?assertEqual(
        {error, {bad_option, retry_on, sometimes}},
        ?P:normalize_connect_opts(#{retry_on => [network, sometimes]})
    ),
    ?assertEqual({error, {bad_option, send_queue, -1}}, ?P:normalize_connect_opts(#{send_queue => -1})),
    ?assertEqual(
        {reconnect, 5, 250}, binary_to_term(?P:reconnect_cmd(5, 250))
    ).

wire(Opts) ->
    {ok, O} = ?P:normalize_connect_opts(Opts),
    ?P:wire_opts(O).

%%====================================================================
%% Commands
%%====================================================================

commands_test() ->
    Wire = [{active, true}, {connect_timeout, 15000}],
    ?assertEqual(
        {connect, 7, <<"ws://a/">>, Wire},
        binary_to_term(?P:connect_cmd(7, <<"ws://a/">>, Wire))
    ),
    ?assertEqual({close, 7, 1000, <<"bye">>}, binary_to_term(?P:close_cmd(7, 1000, <<"bye">>))),
    ?assertEqual({active, 7, once}, binary_to_term(?P:active_cmd(7, once))),
    ?assertEqual({stats, 4294967295}, binary_to_term(?P:stats_cmd(4294967295))),
    ?assertEqual(
        <<1, 0, 0, 1, 2, 1, "héllo"/utf8>>,
        iolist_to_binary(?P:send_cmd(258, text, [<<"hé"/utf8>>, "llo"]))
    ),
    ?assertEqual(<<1, 0, 0, 0, 1, 2, 1, 2, 3>>, iolist_to_binary(?P:send_cmd(1, binary, <<1, 2, 3>>))),
    ?assertEqual(<<1, 0, 0, 0, 1, 9>>, iolist_to_binary(?P:send_cmd(1, ping, []))),
    ?assertEqual(<<1, 0, 0, 0, 1, 10, "p">>, iolist_to_binary(?P:send_cmd(1, pong, "p"))).

close_args_test_() ->
    V = fun ?P:validate_close/2,
    [
        ?_assertEqual({ok, 1000, <<>>}, V(1000, <<>>)),
        ?_assertEqual({ok, 1001, <<"going away">>}, V(1001, "going away")),
        ?_assertEqual({ok, 3000, <<"x">>}, V(3000, x)),
        ?_assertEqual({ok, 4999, <<"é"/utf8>>}, V(4999, "é")),
        ?_assertEqual({ok, 1000, binary:copy(<<"a">>, 123)}, V(1000, binary:copy(<<"a">>, 123))),
        ?_assertEqual({error, reason}, V(1000, binary:copy(<<"a">>, 124))),
        ?_assertEqual({error, code}, V(999, <<>>)),
        ?_assertEqual({error, code}, V(5000, <<>>)),
        ?_assertEqual({error, code}, V(1004, <<>>)),
        ?_assertEqual({error, code}, V(1005, <<>>)),
        ?_assertEqual({error, code}, V(1006, <<>>)),
        ?_assertEqual({error, code}, V(1015, <<>>)),
        ?_assertEqual({error, code}, V(2000, <<>>)),
        ?_assertEqual({error, code}, V(normal, <<>>)),
        ?_assertEqual({ok, 1014, <<>>}, V(1014, <<>>)),
        ?_assertEqual({ok, 1007, <<>>}, V(1007, <<>>)),
        ?_assertEqual({ok, 1003, <<>>}, V(1003, <<>>)),
        ?_assertEqual({error, reason}, V(1000, 42)),
        %% the reason goes in a close frame: UTF-8 (RFC 6455 5.5.1)
        ?_assertEqual({error, reason}, V(1000, <<255, 254>>)),
        ?_assertEqual({error, reason}, V(1000, <<"ab", 16#e6>>))
    ].

%%====================================================================
%% Data packets
%%====================================================================

entry(Id, Op, Payload) ->
    <<Id:32, Op, (byte_size(Payload)):32, Payload/binary>>.

decode_data_test() ->
    Big = binary:copy(<<"z">>, 70000),
    Packet = iolist_to_binary([
        1,
        entry(1, 1, <<"hello">>),
        entry(2, 2, <<>>),
        entry(4294967295, 2, Big),
        entry(1, 1, <<"again">>)
    ]),
    {ok, Entries} = ?P:decode_data(Packet),
    ?assertEqual(
        [{1, text, <<"hello">>}, {2, binary, <<>>}, {4294967295, binary, Big}, {1, text, <<"again">>}],
        Entries
    ),
    %% payloads are sub-binaries of the packet, not copies
    {_, _, BigOut} = lists:nth(3, Entries),
    ?assertEqual(byte_size(Packet), binary:referenced_byte_size(BigOut)).

decode_data_malformed_test_() ->
    Good = entry(1, 1, <<"abc">>),
    [
        ?_assertEqual(error, ?P:decode_data(<<>>)),
        ?_assertEqual(error, ?P:decode_data(<<1>>)),
        ?_assertEqual(error, ?P:decode_data(<<2, Good/binary>>)),
        %% truncated payload, truncated header, trailing garbage
        ?_assertEqual(error, ?P:decode_data(<<1, 0, 0, 0, 1, 1, 0, 0, 0, 4, "abc">>)),
        ?_assertEqual(error, ?P:decode_data(<<1, Good/binary, 0, 0, 0>>)),
        %% unknown opcode, id 0
        ?_assertEqual(error, ?P:decode_data(<<1, (entry(1, 9, <<>>))/binary>>)),
        ?_assertEqual(error, ?P:decode_data(<<1, (entry(0, 1, <<"x">>))/binary>>))
    ].
