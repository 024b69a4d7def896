%% EUnit tests of the heartbeat behaviour helpers and the Deribit heartbeat
%% module (no network).
-module(ws_port_heartbeat_tests).

-include_lib("eunit/include/eunit.hrl").

resolve_test_() ->
    R = fun ws_port_heartbeat:resolve/1,
    [
        ?_assertEqual({ok, ping_pong}, R(ping_pong)),
        ?_assertEqual({ok, none}, R(none)),
        ?_assertEqual({ok, none}, R(false)),
        ?_assertEqual({ok, {ws_port_heartbeat_deribit, #{}}}, R(deribit)),
        ?_assertEqual(
            {ok, {ws_port_heartbeat_deribit, #{interval => 30000}}},
            R(#{type => deribit, interval => 30000})
        ),
        ?_assertEqual(
            {ok, {ws_port_heartbeat_deribit, #{interval => 5000}}},
            R({deribit, [{interval, 5000}]})
        ),
        ?_assertEqual(
            {ok, {ws_port_heartbeat_deribit, #{max_misses => 3}}},
            R({ws_port_heartbeat_deribit, #{max_misses => 3}})
        ),
        ?_assertEqual(error, R(no_such_module_here)),
        %% a module that is not a heartbeat
        ?_assertEqual(error, R(lists)),
        ?_assertEqual(error, R("deribit"))
    ].

decode_json_test_() ->
    D = fun ws_port_heartbeat_deribit:decode_json/1,
    [
        ?_assertEqual({ok, #{}}, D(<<"{}">>)),
        ?_assertEqual({ok, []}, D(<<" [ ] ">>)),
        ?_assertEqual(
            {ok, #{<<"a">> => [1, -2, 3.5, 1.0e3, true, false, null], <<"b">> => #{<<"c">> => <<"d">>}}},
            D(<<"{\"a\": [1, -2, 3.5, 1e3, true, false, null], \"b\": {\"c\": \"d\"}}">>)
        ),
        ?_assertEqual(
            {ok, <<"q\"\\/\n\t", 16#e9/utf8, 16#1F600/utf8>>},
            D(<<"\"q\\\"\\\\\\/\\n\\t\\u00e9\\ud83d\\ude00\"">>)
        ),
        ?_assertEqual({ok, <<"héllo"/utf8>>}, D(<<"\"héllo\""/utf8>>)),
        ?_assertEqual(error, D(<<"{">>)),
        ?_assertEqual(error, D(<<"{\"a\":1,}">>)),
        ?_assertEqual(error, D(<<"[1] x">>)),
        ?_assertEqual(error, D(<<"nope">>)),
        ?_assertEqual(error, D(<<"\"\\x\"">>)),
        ?_assertEqual(error, D(<<>>))
    ].

%% A whole exchange with a Deribit-like server, driven by hand.
deribit_exchange_test() ->
    M = ws_port_heartbeat_deribit,
    {ok, 10000, 2, S0} = M:init(#{interval => 10000}),
    {[{text, SetHb}], S1} = M:connected(S0),
    {ok, #{<<"id">> := Id1, <<"method">> := <<"public/set_heartbeat">>, <<"params">> := Params}} =
        M:decode_json(iolist_to_binary(SetHb)),
    ?assertEqual(#{<<"interval">> => 10}, Params),
    %% the acknowledgement is consumed without counting as a beat
    {consumed, [], S2} = M:handle_frame({text, ack(Id1, <<"\"ok\"">>)}, S1),
    %% a plain heartbeat is a sign of life
    Beat = <<"{\"jsonrpc\":\"2.0\",\"method\":\"heartbeat\",\"params\":{\"type\":\"heartbeat\"}}">>,
    {alive, undefined, [], S3} = M:handle_frame({text, Beat}, S2),
    %% a test request is answered with public/test
    TestReq = <<"{\"jsonrpc\":\"2.0\",\"method\":\"heartbeat\",\"params\":{\"type\":\"test_request\"}}">>,
    {alive, undefined, [{text, Answer}], S4} = M:handle_frame({text, TestReq}, S3),
    {ok, #{<<"id">> := Id2, <<"method">> := <<"public/test">>}} =
        M:decode_json(iolist_to_binary(Answer)),
    ?assert(Id2 > Id1),
    %% whose result gives the round trip
    {alive, Rtt, [], S5} = M:handle_frame({text, ack(Id2, <<"{\"version\":\"1\"}">>)}, S4),
    ?assert(is_integer(Rtt) andalso Rtt >= 0),
    %% anything else passes through: application messages, unknown ids,
    %% binary frames, broken JSON
    ?assertEqual(pass, M:handle_frame({text, ack(Id2, <<"1">>)}, S5)),
    ?assertEqual(pass, M:handle_frame({text, ack(1, <<"1">>)}, S5)),
    ?assertEqual(
        pass,
        M:handle_frame({text, <<"{\"method\":\"subscription\",\"params\":{\"data\":1}}">>}, S5)
    ),
    ?assertEqual(pass, M:handle_frame({binary, Beat}, S5)),
    ?assertEqual(pass, M:handle_frame({text, <<"heartbeat, not JSON">>}, S5)),
    {[], _} = M:tick(S5).

fractional_interval_test() ->
    M = ws_port_heartbeat_deribit,
    {ok, 250, 2, S0} = M:init(#{interval => 250}),
    {[{text, SetHb}], _} = M:connected(S0),
    {ok, #{<<"params">> := #{<<"interval">> := 0.25}}} = M:decode_json(iolist_to_binary(SetHb)).

bad_options_test() ->
    M = ws_port_heartbeat_deribit,
    ?assertError({bad_option, interval, 0}, M:init(#{interval => 0})),
    ?assertError({bad_option, max_misses, x}, M:init(#{max_misses => x})).

ack(Id, Result) ->
    <<"{\"jsonrpc\":\"2.0\",\"id\":", (integer_to_binary(Id))/binary, ",\"result\":", Result/binary, "}">>.
