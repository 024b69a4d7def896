%% EUnit tests of ws_port_phoenix_proto (pure): the socket URL, the V2 and
%% V1 serializers and V2's binary frames.
-module(ws_port_phoenix_proto_tests).

-include_lib("eunit/include/eunit.hrl").

-define(J, {ws_port_json, null}).

url_test() ->
    Url = fun(U, P, S) -> {ok, B} = ws_port_phoenix_proto:socket_url(U, P, S), B end,
    ?assertEqual(<<"ws://h/socket/websocket?vsn=2.0.0">>, Url("ws://h/socket/websocket", #{}, v2)),
    ?assertEqual(<<"ws://h/socket/websocket?vsn=1.0.0">>, Url(<<"ws://h/socket/websocket">>, [], v1)),
    %% a vsn given is kept, params are added to the query the URL has
    ?assertEqual(<<"wss://h:4000/s/websocket?a=1&vsn=2.0.0&token=T">>,
                 Url("wss://h:4000/s/websocket?a=1&vsn=2.0.0", [{token, "T"}], v2)),
    %% nested params as phoenix.js writes them; values are escaped
    ?assertEqual(<<"ws://h/w?user%5Bid%5D=7&q=a+b%26c&vsn=2.0.0">>,
                 Url("ws://h/w", [{user, #{id => 7}}, {<<"q">>, <<"a b&c">>}], v2)),
    ?assertEqual({error, {bad_option, params, {1, 2}}},
                 ws_port_phoenix_proto:socket_url("ws://h/w", [{a, {1, 2}}], v2)),
    ?assertMatch({error, {invalid_url, _}}, ws_port_phoenix_proto:socket_url("ws://h/w?%zz", #{}, v2)).

v2_test() ->
    Msg = #{join_ref => <<"1">>, ref => <<"2">>, topic => <<"room:a">>, event => <<"new">>,
            payload => #{<<"x">> => null}},
    {ok, {text, Text}} = ws_port_phoenix_proto:encode(v2, ?J, Msg),
    ?assertEqual(<<"[\"1\",\"2\",\"room:a\",\"new\",{\"x\":null}]">>, iolist_to_binary(Text)),
    ?assertEqual({ok, Msg}, ws_port_phoenix_proto:decode(v2, ?J, {text, iolist_to_binary(Text)})),
    %% broadcasts have no refs; integer refs are read as binaries
    ?assertEqual({ok, #{join_ref => undefined, ref => <<"5">>, topic => <<"t">>, event => <<"e">>, payload => 1}},
                 ws_port_phoenix_proto:decode(v2, ?J, {text, <<"[null,5,\"t\",\"e\",1]">>})),
    ?assertEqual({error, {bad_message, <<"[1,2,3]">>}}, ws_port_phoenix_proto:decode(v2, ?J, {text, <<"[1,2,3]">>})),
    ?assertEqual({error, {bad_message, <<"[null,null,5,\"e\",1]">>}},
                 ws_port_phoenix_proto:decode(v2, ?J, {text, <<"[null,null,5,\"e\",1]">>})),
    ?assertMatch({error, {bad_json, {unexpected_byte, _, _}}}, ws_port_phoenix_proto:decode(v2, ?J, {text, <<"x">>})).

v1_test() ->
    Msg = #{join_ref => undefined, ref => <<"3">>, topic => <<"t">>, event => <<"e">>, payload => #{}},
    {ok, {text, Text}} = ws_port_phoenix_proto:encode(v1, ?J, Msg),
    {ok, Obj} = ws_port_json:decode(iolist_to_binary(Text)),
    ?assertEqual(#{<<"topic">> => <<"t">>, <<"event">> => <<"e">>, <<"payload">> => #{},
                   <<"ref">> => <<"3">>, <<"join_ref">> => null}, Obj),
    %% the V1 server sends no join_ref
    ?assertEqual({ok, Msg#{ref => undefined}},
                 ws_port_phoenix_proto:decode(v1, ?J, {text, <<"{\"topic\":\"t\",\"event\":\"e\",\"payload\":{},\"ref\":null}">>})),
    ?assertEqual({error, {binary_payload_needs_v2, v1}},
                 ws_port_phoenix_proto:encode(v1, ?J, Msg#{payload => {binary, <<1>>}})).

binary_test() ->
    Push = #{join_ref => <<"12">>, ref => <<"3">>, topic => <<"room:b">>, event => <<"up">>,
             payload => {binary, <<0, 255>>}},
    {ok, {binary, Frame}} = ws_port_phoenix_proto:encode(v2, ?J, Push),
    ?assertEqual(<<0, 2, 1, 6, 2, "12", "3", "room:b", "up", 0, 255>>, iolist_to_binary(Frame)),
    %% from the server: push (no ref), reply, broadcast
    ?assertEqual({ok, #{join_ref => <<"12">>, ref => undefined, topic => <<"t">>, event => <<"ev">>,
                        payload => {binary, <<9>>}}},
                 ws_port_phoenix_proto:decode(v2, ?J, {binary, <<0, 2, 1, 2, "12", "t", "ev", 9>>})),
    ?assertEqual({ok, #{join_ref => <<"1">>, ref => <<"4">>, topic => <<"t">>, event => <<"phx_reply">>,
                        payload => #{<<"status">> => <<"ok">>, <<"response">> => {binary, <<7>>}}}},
                 ws_port_phoenix_proto:decode(v2, ?J, {binary, <<1, 1, 1, 1, 2, "1", "4", "t", "ok", 7>>})),
    ?assertEqual({ok, #{join_ref => undefined, ref => undefined, topic => <<"t">>, event => <<"b">>,
                        payload => {binary, <<>>}}},
                 ws_port_phoenix_proto:decode(v2, ?J, {binary, <<2, 1, 1, "t", "b">>})),
    ?assertEqual({error, {bad_binary_frame, <<3, 1>>}}, ws_port_phoenix_proto:decode(v2, ?J, {binary, <<3, 1>>})),
    ?assertEqual({error, {bad_binary_frame, <<0, 9, 9, 9>>}},
                 ws_port_phoenix_proto:decode(v2, ?J, {binary, <<0, 9, 9, 9>>})),
    Long = binary:copy(<<"x">>, 256),
    ?assertMatch({error, {too_long_for_binary_frame, _}},
                 ws_port_phoenix_proto:encode(v2, ?J, Push#{topic => Long})).

%% phoenix.js's schedules, as ws_port_phoenix_conn gives them to ws_port
%% (reconnect, through retry_fun) and uses itself (rejoin after phx_error).
backoff_test() ->
    ?assertEqual([10, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000, 5000],
                 [ws_port_phoenix_conn:reconnect_after(N) || N <- lists:seq(1, 11)]),
    ?assertEqual([1000, 2000, 5000, 10000, 10000], [ws_port_phoenix_conn:rejoin_after(N) || N <- lists:seq(1, 5)]),
    S1 = ws_port_phoenix_conn:phoenix_backoff(#{tries => 0, delay => 10}),
    ?assertEqual(#{tries => 1, delay => 10}, S1),
    ?assertEqual(#{tries => 2, delay => 50}, ws_port_phoenix_conn:phoenix_backoff(S1)),
    %% every server close is retried but those answering our protocol errors
    ?assert(lists:member({remote_close, {except, [1002, 1003, 1007, 1009]}}, ws_port_phoenix_conn:retry_on())).
