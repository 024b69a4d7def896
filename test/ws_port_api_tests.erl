%% EUnit tests of what ws_port's API refuses, and how, as a newcomer meets
%% it: through the real port program (priv/ws_port) and the
%% python3-websockets test server (test/peers/ws_server.py) on 127.0.0.1.
%%
%% - a message the connection may not send (text that is not UTF-8, a
%%   control payload over 125 bytes, a message over max_message_size) is an
%%   error return naming it; nothing reaches the server, the connection
%%   stays up;
%% - arguments of the wrong shape raise badarg whose error_info names the
%%   argument, and nothing is logged (no "Bad value on output port");
%% - info/1 carries the handshake's subprotocol and response headers;
%% - connect/2 before the application is started says so.
-module(ws_port_api_tests).

-include_lib("eunit/include/eunit.hrl").

%% logger handler callback (collects log events for the tests)
-export([log/2]).

-define(WAIT, 20000).

%%====================================================================
%% Fixture
%%====================================================================

api_test_() ->
    {setup, fun ws_port_test_peer:start/0, fun ws_port_test_peer:stop/1, fun(Peer) ->
        {inorder, [
            {timeout, 60, {Name, fun() -> F(ws_port_test_peer:base(Peer)) end}}
         || {Name, F} <- [
                {"text that is not UTF-8 is refused at the call", fun invalid_utf8/1},
                {"bad arguments raise badarg naming them, nothing logged", fun bad_arguments/1},
                {"control payloads over 125 bytes are refused at the call", fun control_too_large/1},
                {"messages over max_message_size are refused at the call", fun message_too_large/1},
                {"info/1 has the subprotocol and the response headers", fun info_handshake/1},
                {"option errors are {bad_option, Name, Value}", fun option_errors/1}
            ]
        ]}
    end}.

flush() ->
    receive
        _ -> flush()
    after 0 -> ok
    end.

recv(Conn) ->
    receive
        {ws_port, Conn, Frame} -> Frame
    after ?WAIT -> error(no_frame)
    end.

%% No message for Conn arrives within a moment (after an echo proved the
%% server has handled everything sent before).
assert_quiet(Conn) ->
    receive
        {Tag, Conn, _} = M when Tag =/= ws_port -> error({unexpected, M});
        {Tag, Conn, _, _} = M -> error({unexpected, Tag, M})
    after 200 -> ok
    end.

%% The connection is still up and in order: an echo comes back.
assert_echoes(Conn) ->
    Tag = integer_to_binary(erlang:unique_integer([positive])),
    ok = ws_port:send(Conn, {text, Tag}),
    ?assertEqual({text, Tag}, recv(Conn)).

%% The exception of F: {Class, Reason, ArgumentDescriptions}.
raised(F) ->
    try F() of
        Result -> {returned, Result}
    catch
        error:badarg:Stack ->
            [{M, _, _, _} | _] = Stack,
            {badarg, maps:map(fun(_, V) -> unicode:characters_to_binary(V) end, M:format_error(badarg, Stack))};
        Class:Reason ->
            {Class, Reason}
    end.

%% Log events while F runs (a logger handler of this module).
logged(F) ->
    Id = list_to_atom("ws_port_api_tests_" ++ integer_to_list(erlang:unique_integer([positive]))),
    ok = logger:add_handler(Id, ?MODULE, #{level => all, config => #{pid => self()}}),
    try
        F(),
        %% erts reports a bad port command asynchronously
        timer:sleep(200)
    after
        ok = logger:remove_handler(Id)
    end,
    collect_logs([]).

collect_logs(Acc) ->
    receive
        {?MODULE, log, Event} -> collect_logs([Event | Acc])
    after 0 -> lists:reverse(Acc)
    end.

%% @private logger handler callback
log(Event, #{config := #{pid := Pid}}) ->
    Pid ! {?MODULE, log, Event},
    ok.

%%====================================================================
%% Sending
%%====================================================================

invalid_utf8(Base) ->
    flush(),
    {ok, Conn} = ws_port:connect(Base ++ "/echo", #{}),
    %% before: ok, the server closed with 1007 and ws_port reconnected
    ?assertEqual({error, {invalid_utf8, 0}}, ws_port:send(Conn, {text, <<255, 254>>})),
    %% the offset of the first byte that is not part of a character
    ?assertEqual({error, {invalid_utf8, 3}}, ws_port:send(Conn, {text, <<"abc", 16#C3, $d>>})),
    %% a character cut at the end
    ?assertEqual({error, {invalid_utf8, 2}}, ws_port:send(Conn, {text, <<"ab", 16#E6, 16#97>>})),
    %% surrogates are not UTF-8
    ?assertEqual({error, {invalid_utf8, 0}}, ws_port:send(Conn, {text, <<16#ED, 16#A0, 16#80>>})),
    %% iodata: the list's integers are bytes (200 alone is not UTF-8)
    ?assertEqual({error, {invalid_utf8, 1}}, ws_port:send(Conn, {text, [$a, 200]})),
    ?assertEqual({error, {invalid_utf8, 1}}, ws_port:send(Conn, {text, [<<"a">>, [<<16#C3>>], <<"(">>]})),
    %% valid UTF-8 given in pieces, split inside a character
    ok = ws_port:send(Conn, {text, [<<"h", 16#C3>>, [16#A9], <<"!">>]}),
    ?assertEqual({text, <<"hé!"/utf8>>}, recv(Conn)),
    %% binary messages are not text: anything goes
    ok = ws_port:send(Conn, {binary, <<255, 254>>}),
    ?assertEqual({binary, <<255, 254>>}, recv(Conn)),
    %% the server never saw the bad text: no close 1007, no reconnection
    assert_echoes(Conn),
    assert_quiet(Conn),
    ok = ws_port:close(Conn).

bad_arguments(Base) ->
    flush(),
    {ok, Conn} = ws_port:connect(Base ++ "/echo", #{}),
    Self = self(),
    Calls = [
        {fun() -> ws_port:send(Conn, {text, 123}) end, 2, <<"iodata">>},
        {fun() -> ws_port:send(Conn, {binary, [1, 2 | 3]}) end, 2, <<"iodata">>},
        {fun() -> ws_port:send(Conn, {text, [256]}) end, 2, <<"iodata">>},
        {fun() -> ws_port:send(Conn, bad) end, 2, <<"{text | binary | ping | pong, iodata()}">>},
        {fun() -> ws_port:send(Conn, {close, <<>>}) end, 2, <<"{text | binary | ping | pong, iodata()}">>},
        {fun() -> ws_port:send(not_a_conn, {text, <<"x">>}) end, 1, <<"not a ws_port connection">>},
        {fun() -> ws_port:close(Conn, 999, "x") end, 2, <<"1000-1003, 1007-1014 and 3000-4999">>},
        {fun() -> ws_port:close(Conn, 1005, "x") end, 2, <<"1000-1003, 1007-1014 and 3000-4999">>},
        {fun() -> ws_port:close(Conn, 1000, binary:copy(<<"a">>, 124)) end, 3, <<"123 bytes">>},
        {fun() -> ws_port:close(Conn, 1000, <<255>>) end, 3, <<"UTF-8">>},
        {fun() -> ws_port:close("x") end, 1, <<"not a ws_port connection">>},
        {fun() -> ws_port:controlling_process(Conn, nope) end, 2, <<"must be a pid">>},
        {fun() -> ws_port:info("x") end, 1, <<"not a ws_port connection">>},
        {fun() -> ws_port:setopts(Conn, active) end, 2, <<"list">>},
        {fun() -> ws_port:reconnect(Conn, -1) end, 2, <<"0..4294967295">>}
    ],
    Logs = logged(fun() ->
        [
            begin
                R = raised(F),
                ?assertMatch({{badarg, #{Pos := _}}, Pos}, {R, Pos}),
                {badarg, #{Pos := Text}} = R,
                ?assertNotEqual(nomatch, binary:match(Text, Expect), Text)
            end
         || {F, Pos, Expect} <- Calls
        ]
    end),
    %% before: "Bad value on output port '.../priv/ws_port'"
    ?assertEqual([], Logs),
    %% nothing reached the port: no ws_port_error, the connection is fine
    assert_echoes(Conn),
    assert_quiet(Conn),
    ?assertEqual(Self, maps:get(owner, element(2, ws_port:info(Conn)))),
    ok = ws_port:close(Conn).

control_too_large(Base) ->
    flush(),
    {ok, Conn} = ws_port:connect(Base ++ "/echo", #{}),
    %% before: ok, then a ws_port_error from the port program
    ?assertEqual({error, {too_large, 126, 125}}, ws_port:send(Conn, {ping, binary:copy(<<"p">>, 126)})),
    ?assertEqual({error, {too_large, 200, 125}}, ws_port:send(Conn, {pong, [binary:copy(<<"p">>, 100), binary:copy(<<"q">>, 100)]})),
    ok = ws_port:send(Conn, {ping, binary:copy(<<"p">>, 125)}),
    receive
        {ws_port_pong, Conn, Rtt} -> ?assert(is_integer(Rtt))
    after ?WAIT -> error(no_pong)
    end,
    assert_echoes(Conn),
    assert_quiet(Conn),
    ok = ws_port:close(Conn).

message_too_large(Base) ->
    flush(),
    {ok, Small} = ws_port:connect(Base ++ "/echo", #{max_message_size => 1000}),
    ?assertEqual({error, {too_large, 1001, 1000}}, ws_port:send(Small, {binary, binary:copy(<<1>>, 1001)})),
    ?assertEqual({error, {too_large, 1500, 1000}}, ws_port:send(Small, {text, [binary:copy(<<"t">>, 750), binary:copy(<<"t">>, 750)]})),
    Max = binary:copy(<<"m">>, 1000),
    ok = ws_port:send(Small, {text, Max}),
    ?assertEqual({text, Max}, recv(Small)),
    assert_quiet(Small),
    ok = ws_port:close(Small),
    %% the default bound is the port's default max_message_size, 64 MiB
    {ok, Conn} = ws_port:connect(Base ++ "/echo", #{}),
    Big = 64 * 1024 * 1024,
    ?assertEqual({error, {too_large, Big + 1, Big}}, ws_port:send(Conn, {binary, binary:copy(<<0>>, Big + 1)})),
    assert_echoes(Conn),
    assert_quiet(Conn),
    ok = ws_port:close(Conn).

%%====================================================================
%% Results
%%====================================================================

info_handshake(Base) ->
    flush(),
    {ok, Conn} = ws_port:connect(Base ++ "/subprotocol", #{protocols => [<<"chat.v1">>, <<"x">>]}),
    ?assertEqual({text, <<"chat.v1">>}, recv(Conn)),
    {ok, Info} = ws_port:info(Conn),
    ?assertEqual(<<"chat.v1">>, maps:get(protocol, Info, missing)),
    Headers = maps:get(headers, Info, missing),
    ?assert(is_list(Headers)),
    Lower = [{string:lowercase(N), V} || {N, V} <- Headers],
    ?assertEqual({<<"sec-websocket-protocol">>, <<"chat.v1">>}, lists:keyfind(<<"sec-websocket-protocol">>, 1, Lower)),
    ?assertMatch({_, _}, lists:keyfind(<<"sec-websocket-accept">>, 1, Lower)),
    ok = ws_port:close(Conn),
    %% no subprotocol agreed
    {ok, Plain} = ws_port:connect(Base ++ "/echo", #{await => false}),
    receive
        {ws_port_up, Plain, _} -> ok
    after ?WAIT -> error(no_up)
    end,
    {ok, Info2} = ws_port:info(Plain),
    ?assertEqual(undefined, maps:get(protocol, Info2, missing)),
    ?assertMatch([_ | _], maps:get(headers, Info2, missing)),
    %% the current connection's: none while it is down
    ok = ws_port:reconnect(Plain, 60000),
    receive
        {ws_port_down, Plain, reconnect, _} -> ok
    after ?WAIT -> error(no_down)
    end,
    {ok, Info3} = ws_port:info(Plain),
    ?assertMatch(#{protocol := undefined, headers := undefined}, Info3),
    ok = ws_port:close(Plain).

option_errors(Base) ->
    Url = Base ++ "/echo",
    %% the port program refused these after DNS, TCP and TLS, with a 2-tuple
    ?assertEqual({error, {bad_option, headers, [{"Host", "x"}]}}, ws_port:connect(Url, #{headers => [{"Host", "x"}]})),
    ?assertEqual(
        {error, {bad_option, headers, [{<<"a">>, <<"b">>}, {'Sec-WebSocket-Key', <<"k">>}]}},
        ws_port:connect(Url, #{headers => [{<<"a">>, <<"b">>}, {'Sec-WebSocket-Key', <<"k">>}]})
    ),
    %% silently passive before
    ?assertEqual({error, {bad_option, active, -3}}, ws_port:connect(Url, #{active => -3})),
    %% a later entry won before
    ?assertEqual({error, {bad_option, {duplicate, active}, 2}}, ws_port:connect(Url, [{active, 1}, {active, 2}])),
    ?assertEqual({error, {bad_option, {duplicate, await}, false}}, ws_port:connect(Url, [await, {await, false}])),
    ?assertEqual(
        {error, {bad_option, {duplicate, {retry, delay}}, 2}},
        ws_port:connect(Url, [{retry, [{delay, 1}, {delay, 2}]}])
    ),
    ?assertEqual(
        {error, {bad_option, {duplicate, {tls, verify}}, verify_none}},
        ws_port:connect(Url, [{tls, [{verify, verify_peer}, {verify, verify_none}]}])
    ),
    %% ws_port_client: the option's name, not `hook'; duplicates; unknown
    %% names; all answered without starting a process
    ?assertEqual(
        {error, {bad_option, on_disconnect, nofun}},
        ws_port_client:start(ws_port_client_forward, Url, #{on_disconnect => nofun})
    ),
    ?assertEqual(
        {error, {bad_option, {duplicate, window}, 5}},
        ws_port_client:start(ws_port_client_forward, Url, [{window, 4}, {window, 5}])
    ),
    ?assertEqual(
        {error, {bad_option, hearbeat, none}},
        ws_port_client:start_link(ws_port_client_forward, Url, [{hearbeat, none}])
    ),
    ?assertEqual(
        {error, {bad_option, active, -1}},
        ws_port_client:start_link(ws_port_client_forward, Url, [{headers, []}, {active, -1}])
    ),
    ?assertEqual(
        {error, {bad_option, {duplicate, window}, 2}},
        ws_port_client_sup:start_client(Url, [{window, 1}, {window, 2}])
    ),
    ?assertEqual(
        {error, {bad_option, {duplicate, retry}, true}},
        ws_port_sync:connect(Url, [{retry, false}, {retry, true}])
    ),
    %% every error is {bad_option, Name, Value}
    [
        ?assertMatch({error, {bad_option, _, _}}, ws_port:connect(Url, Opts))
     || Opts <- [
            x,
            [x | y],
            ["x"],
            [{"a", 1}],
            #{tls => [x]},
            #{retry => [{delay, 1} | x]},
            #{headers => [{"Connection", "close"}]},
            #{headers => [{"upgrade", "x"}]},
            #{headers => [{"Sec-WebSocket-Version", "8"}]}
        ]
    ].

%%====================================================================
%% Before the application is started
%%====================================================================

not_started_test_() ->
    {timeout, 60, fun not_started/0}.

not_started() ->
    Running = lists:keymember(ws_port, 1, application:which_applications()),
    _ = application:stop(ws_port),
    try
        %% before: {error, {no_driver, ws_port_driver_1}}
        ?assertEqual({error, {not_started, ws_port}}, ws_port:connect("ws://127.0.0.1:1/", #{})),
        ?assertEqual(
            {error, {not_started, ws_port}}, ws_port:connect("ws://127.0.0.1:1/", #{driver => ws_port_driver_1})
        )
    after
        case Running of
            true -> {ok, _} = application:ensure_all_started(ws_port);
            false -> ok
        end
    end.
