%% EUnit tests of reconnection on the BEAM side: the retry_fun contract
%% (ws_port_retry, pure), option normalisation of retry / retry_fun, and
%% the driver against the real port program (priv/ws_port): retry_fun
%% state carried through and reset after a reconnect, retry_fun stopping,
%% an awaited connect failing fast with retries on, await => false seeing
%% ws_port_down then ws_port_up, sends while disconnected. Everything on
%% 127.0.0.1.
-module(ws_port_retry_tests).

-include_lib("eunit/include/eunit.hrl").

-define(P, ws_port_proto).
-define(WAIT, 20000).

%%====================================================================
%% ws_port_retry (pure)
%%====================================================================

next_test_() ->
    Dec = fun(#{retries_left := 0}) -> stop;
             (#{retries_left := N} = S) -> S#{retries_left := N - 1, delay := 10 * N}
          end,
    [
        ?_assertEqual(
            {ok, 20, #{retries_left => 1, delay => 20, mine => keep}},
            ws_port_retry:next(Dec, #{retries_left => 2, delay => 0, mine => keep})
        ),
        ?_assertEqual(stop, ws_port_retry:next(Dec, #{retries_left => 0, delay => 5})),
        %% the returned map needs an integer delay in 0..2^32-1
        ?_assertEqual(
            {error, {bad_return, #{}}}, ws_port_retry:next(fun(_) -> #{} end, #{delay => 1})
        ),
        ?_assertEqual(
            {error, {bad_return, #{delay => -1}}},
            ws_port_retry:next(fun(_) -> #{delay => -1} end, #{})
        ),
        ?_assertEqual(
            {error, {bad_return, #{delay => 1.5}}},
            ws_port_retry:next(fun(_) -> #{delay => 1.5} end, #{})
        ),
        ?_assertEqual(
            {error, {bad_return, #{delay => 1 bsl 32}}},
            ws_port_retry:next(fun(_) -> #{delay => 1 bsl 32} end, #{})
        ),
        ?_assertEqual({error, {bad_return, ok}}, ws_port_retry:next(fun(_) -> ok end, #{})),
        ?_assertEqual({ok, 0, #{delay => 0}}, ws_port_retry:next(fun(S) -> S end, #{delay => 0})),
        %% crashes are caught
        ?_assertMatch(
            {error, {crash, error, {badmatch, _}}},
            ws_port_retry:next(fun(S) -> 1 = map_size(S) end, #{})
        ),
        ?_assertEqual({error, {crash, throw, x}}, ws_port_retry:next(fun(_) -> throw(x) end, #{})),
        ?_assertEqual({error, {crash, exit, y}}, ws_port_retry:next(fun(_) -> exit(y) end, #{})),
        ?_assertEqual(
            #{max_retries => 5, retries_left => 5, delay => 10000}, ws_port_retry:default_state()
        )
    ].

%%====================================================================
%% Options
%%====================================================================

default_policy_test() ->
    %% full jitter: each wait drawn from [0, delay] (issue 16: a fleet that
    %% lost its server together must not come back together)
    Policy = #{max_retries => infinity, delay => 1000, max_delay => 30000, backoff_factor => 2, jitter => full},
    ?assertEqual(Policy, ?P:default_retry()),
    Wire = [{backoff_factor, 2}, {delay, 1000}, {jitter, full}, {max_delay, 30000}, {max_retries, infinity}],
    %% absent and true: the default policy, sent explicitly
    ?assertEqual([{retry, Wire}], retry_wire(#{})),
    ?assertEqual([{retry, Wire}], retry_wire(#{retry => true})),
    ?assertEqual([{retry, Wire}], retry_wire([retry])),
    ?assertEqual([{retry, false}], retry_wire(#{retry => false})),
    %% given keys override the defaults
    ?assertEqual(
        [{retry, lists:keystore(delay, 1, Wire, {delay, 5})}], retry_wire(#{retry => #{delay => 5}})
    ),
    ?assertEqual(
        [{retry, lists:sort([{manual, true} | Wire])}], retry_wire(#{retry => [{manual, true}]})
    ).

jitter_fraction_test() ->
    ?assertMatch(
        {ok, #{retry := #{jitter := 0.25}}},
        ?P:normalize_connect_opts(#{retry => #{jitter_fraction => 0.25}})
    ),
    ?assertMatch(
        {ok, #{retry := #{jitter := 0}}}, ?P:normalize_connect_opts([{retry, [{jitter_fraction, 0}]}])
    ),
    ?assertEqual(
        {error, {bad_option, {retry, jitter_fraction}, 2}},
        ?P:normalize_connect_opts(#{retry => #{jitter_fraction => 2}})
    ),
    ?assertEqual(
        {error, {bad_option, {retry, jitter_fraction}, 0.2}},
        ?P:normalize_connect_opts(#{retry => #{jitter => 0.1, jitter_fraction => 0.2}})
    ),
    ?assertNot(lists:keymember(jitter_fraction, 1, proplists:get_value(
        retry, wire(#{retry => #{jitter_fraction => 0.3}})
    ))).

%% jitter's modes: full and equal (atoms), a fraction; nothing else.
jitter_modes_test() ->
    [
        ?assertMatch({ok, #{retry := #{jitter := M}}}, ?P:normalize_connect_opts(#{retry => #{jitter => M}}))
     || M <- [full, equal, 0, 0.1, 1]
    ],
    ?assertMatch(
        {ok, #{retry := #{jitter := equal}}},
        ?P:normalize_connect_opts([{retry, [{jitter_fraction, equal}]}])
    ),
    ?assertEqual([{jitter, equal}], [J || {jitter, _} = J <- proplists:get_value(
        retry, wire(#{retry => #{jitter => equal}})
    )]),
    [
        ?assertEqual(
            {error, {bad_option, {retry, jitter}, Bad}}, ?P:normalize_connect_opts(#{retry => #{jitter => Bad}})
        )
     || Bad <- [half, -0.1, 1.5, "full", <<"full">>]
    ].

retry_on_test() ->
    V = fun ws_port_retry:validate_retry_on/1,
    %% accepted: names, classes, remote_close in its three forms
    [?assertEqual(ok, V(R), R) || R <- [
        default,
        stay_connected,
        [],
        [network, timeout, http_5xx, http_429, http_4xx, tls, protocol, http_other],
        [network, remote_close],
        [{remote_close, [1000, 4000, 4999]}, timeout],
        [{remote_close, []}],
        [{remote_close, {except, [1002, 1003]}}],
        ws_port_retry:retry_on(default),
        ws_port_retry:retry_on(stay_connected),
        [{remote_close, lists:seq(3000, 3063)}]
    ]],
    %% refused, naming the bad element
    ?assertEqual({error, {bad_option, retry_on, always}}, V(always)),
    ?assertEqual({error, {bad_option, retry_on, 5}}, V(5)),
    ?assertEqual({error, {bad_option, retry_on, nope}}, V([network, nope])),
    ?assertEqual({error, {bad_option, retry_on, default}}, V([default])),
    ?assertEqual({error, {bad_option, retry_on, timeout}}, V([network | timeout])),
    ?assertEqual({error, {bad_option, retry_on, {remote_close, [1000]}}},
                 V([remote_close, {remote_close, [1000]}])),
    ?assertEqual({error, {bad_option, retry_on, {remote_close, {except, []}}}},
                 V([{remote_close, [1000]}, tls, {remote_close, {except, []}}])),
    ?assertEqual({error, {bad_option, {retry_on, remote_close}, 999}},
                 V([{remote_close, [1000, 999]}])),
    ?assertEqual({error, {bad_option, {retry_on, remote_close}, 5000}},
                 V([{remote_close, {except, [5000]}}])),
    ?assertEqual({error, {bad_option, {retry_on, remote_close}, x}},
                 V([{remote_close, [x]}])),
    ?assertEqual({error, {bad_option, {retry_on, remote_close}, 1000}},
                 V([{remote_close, 1000}])),
    ?assertEqual({error, {bad_option, {retry_on, remote_close}, [1000 | 1001]}},
                 V([{remote_close, [1000 | 1001]}])),
    ?assertEqual({error, {bad_option, retry_on, {remote_close, a, b}}},
                 V([{remote_close, a, b}])),
    TooMany = lists:seq(3000, 3064),
    ?assertEqual({error, {bad_option, {retry_on, remote_close}, TooMany}},
                 V([{remote_close, TooMany}])),
    %% the named policies
    ?assertEqual(
        [network, timeout, http_5xx, http_429, protocol,
         {remote_close, [1001, 1005, 1006, 1011, 1012, 1013, 1014]}],
        ws_port_retry:retry_on(default)
    ),
    ?assertEqual(
        [network, timeout, http_5xx, http_429, protocol,
         {remote_close, {except, [1002, 1003, 1007, 1009]}}],
        ws_port_retry:retry_on(stay_connected)
    ),
    %% connect options: passed to the port as given
    ?assertEqual([{retry_on, stay_connected}],
                 [W || {retry_on, _} = W <- wire(#{retry_on => stay_connected})]),
    ?assertEqual([{retry_on, [{remote_close, {except, [1000]}}]}],
                 [W || {retry_on, _} = W <- wire(#{retry_on => [{remote_close, {except, [1000]}}]})]),
    ?assertEqual({error, {bad_option, {retry_on, remote_close}, 1}},
                 ?P:normalize_connect_opts(#{retry_on => [{remote_close, [1]}]})).

retry_fun_opts_test() ->
    F = fun(S) -> S end,
    {ok, O} = ?P:normalize_connect_opts(#{retry_fun => F}),
    ?assertMatch(#{retry := #{manual := true}, retry_fun := F}, O),
    ?assertEqual(ws_port_retry:default_state(), maps:get(retry_state, O)),
    %% the port only hears manual mode; fun and state stay on the BEAM side
    ?assertEqual([{retry, [{manual, true}]}], [W || {retry, _} = W <- ?P:wire_opts(O)]),
    ?assertEqual([], [W || {K, _} = W <- ?P:wire_opts(O), K =:= retry_fun orelse K =:= retry_state]),
    {ok, O2} = ?P:normalize_connect_opts([{retry_fun, F}, {retry_state, #{delay => 1, x => y}}, retry]),
    ?assertEqual(#{delay => 1, x => y}, maps:get(retry_state, O2)),
    ?assertEqual([{retry, [{manual, true}]}], [W || {retry, _} = W <- ?P:wire_opts(O2)]),
    %% retry_on passes through
    ?assertMatch(
        {ok, #{retry_on := [http_4xx]}},
        ?P:normalize_connect_opts(#{retry_fun => F, retry_on => [http_4xx]})
    ),
    Bad = fun(O3) -> ?P:normalize_connect_opts(O3) end,
    ?assertEqual({error, {bad_option, retry_fun, x}}, Bad(#{retry_fun => x})),
    G = fun(_, _) -> ok end,
    ?assertEqual({error, {bad_option, retry_fun, G}}, Bad(#{retry_fun => G})),
    ?assertEqual({error, {bad_option, retry_state, [a]}}, Bad(#{retry_fun => F, retry_state => [a]})),
    %% retry_state without retry_fun, retry_fun with another policy
    ?assertEqual({error, {bad_option, retry_state, #{}}}, Bad(#{retry_state => #{}})),
    ?assertEqual({error, {bad_option, retry, false}}, Bad(#{retry_fun => F, retry => false})),
    ?assertEqual(
        {error, {bad_option, retry, #{delay => 1}}}, Bad(#{retry_fun => F, retry => #{delay => 1}})
    ).

wire(Opts) ->
    {ok, Normal} = ?P:normalize_connect_opts(Opts),
    ?P:wire_opts(Normal).

retry_wire(Opts) ->
    [W || {retry, _} = W <- wire(Opts)].

%%====================================================================
%% The driver against the real port program
%%====================================================================

driver_test_() ->
    {setup, fun start/0, fun stop/1, fun(Peer) ->
        {inorder, [
            {timeout, 60, {Name, fun() -> F(Peer) end}}
         || {Name, F} <- [
                {"an awaited connect fails fast with retries on", fun awaited_fails_fast/1},
                {"await => false: ws_port_down then ws_port_up", fun await_false_down_up/1},
                {"the default policy spreads a fleet's first retries", fun default_spreads/1},
                {"retry_fun: extra keys carried through, stop", fun retry_fun_stop/1},
                {"retry_fun: a crash or a bad return stops retries", fun retry_fun_crash/1},
                {"retry_fun: state reset after a reconnect", fun retry_fun_reset/1},
                {"automatic retries: down info, closed when exhausted", fun auto_exhausted/1},
                {"not retried: 4xx is final", fun not_retried_4xx/1},
                {"sends while disconnected", fun sends_while_down/1},
                {"info/1 has the documented keys", fun info_keys/1}
            ]
        ]}
    end}.

start() -> ws_port_test_peer:start().

stop(Peer) -> ws_port_test_peer:stop(Peer).

base(Peer) -> ws_port_test_peer:base(Peer).

%% A port on 127.0.0.1 where nothing listens: every attempt is econnrefused.
closed_url() ->
    {ok, L} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, P} = inet:port(L),
    ok = gen_tcp:close(L),
    "ws://127.0.0.1:" ++ integer_to_list(P) ++ "/".

flush() ->
    receive
        _ -> flush()
    after 0 -> ok
    end.

awaited_fails_fast(_Peer) ->
    flush(),
    Url = closed_url(),
    T0 = erlang:monotonic_time(millisecond),
    %% default policy (infinite retries) and an explicit one
    ?assertEqual({error, econnrefused}, ws_port:connect(Url, #{})),
    ?assertEqual({error, econnrefused}, ws_port:connect(Url, #{retry => #{delay => 10}})),
    ?assertEqual({error, econnrefused}, ws_port:connect(Url, #{retry_fun => fun(S) -> S end})),
    ?assertEqual({error, econnrefused}, ws_port:connect(Url, #{retry => false})),
    ?assert(erlang:monotonic_time(millisecond) - T0 < 5000),
    %% no message for any of them, no retries going on in the port
    receive
        M -> ?assertEqual(nothing, M)
    after 300 -> ok
    end.

await_false_down_up(Peer) ->
    flush(),
    %% the connection to a closed port goes down; meanwhile a good one is
    %% opened with await => false and comes up
    {ok, Bad} = ws_port:connect(closed_url(), #{await => false, retry => #{delay => 20, jitter => 0}}),
    ?assertMatch(
        {ws_port_down, Bad, econnrefused, #{attempt := 1, delay_ms := 20, unsent_bytes := 0}},
        recv_any(Bad)
    ),
    ?assertMatch({ws_port_down, Bad, econnrefused, #{attempt := 2, delay_ms := 40}}, recv_any(Bad)),
    ok = ws_port:close(Bad),
    {ok, Good} = ws_port:connect(base(Peer) ++ "/echo", #{await => false}),
    ?assertMatch({ws_port_up, Good, #{status := 101}}, recv_any(Good)),
    %% the server closes with 1012 (service restart): retried by default
    {ok, Closer} = ws_port:connect(
        base(Peer) ++ "/close?code=1012&reason=again", #{await => false, retry => #{delay => 10}}
    ),
    ?assertMatch({ws_port_up, Closer, _}, recv_any(Closer)),
    ?assertMatch(
        {ws_port_down, Closer, {remote, 1012, <<"again">>}, #{attempt := 1, delay_ms := D}} when
            is_integer(D),
        recv_any(Closer)
    ),
    ?assertMatch({ws_port_up, Closer, _}, recv_any(Closer)),
    ?assertMatch({ws_port_down, Closer, {remote, 1012, _}, #{attempt := 1}}, recv_any(Closer)),
    ok = ws_port:close(Closer),
    ok = ws_port:close(Good),
    flush().

%% 50 connections refused at once with the default policy: each first
%% retry is drawn from [0, 1000] ms (full jitter), and together they cover
%% far more than the old default's 900..1100 window. (With 50 independent
%% draws the spread is below 400 ms with probability about 50 * 0.4^49.)
default_spreads(_Peer) ->
    flush(),
    Url = closed_url(),
    Conns = [element(2, {ok, _} = ws_port:connect(Url, #{await => false})) || _ <- lists:seq(1, 50)],
    Delays = [
        begin
            {ws_port_down, C, econnrefused, #{attempt := 1, delay_ms := D}} = recv_any(C),
            ok = ws_port:close(C),
            D
        end
     || C <- Conns
    ],
    ?assert(lists:all(fun(D) -> is_integer(D) andalso D >= 0 andalso D =< 1000 end, Delays)),
    ?assert(lists:max(Delays) - lists:min(Delays) > 400),
    ?assert(length([D || D <- Delays, D < 900]) > 0),
    flush().

retry_fun_stop(_Peer) ->
    flush(),
    Self = self(),
    Fun = fun
        (#{retries_left := 0} = S) ->
            Self ! {retry_fun, S},
            stop;
        (#{retries_left := N, delay := D} = S) ->
            Self ! {retry_fun, S},
            S#{retries_left := N - 1, delay := D + 5, calls => maps:get(calls, S, 0) + 1}
    end,
    Init = #{retries_left => 2, delay => 10, tag => <<"mine">>},
    {ok, Conn} = ws_port:connect(closed_url(), #{await => false, retry_fun => Fun, retry_state => Init}),
    %% the fun sees its own state, extra keys and all, one call per failure
    ?assertEqual({retry_fun, Init}, recv_fun()),
    ?assertMatch(
        {ws_port_down, Conn, econnrefused, #{attempt := 1, delay_ms := 15}}, recv_any(Conn)
    ),
    ?assertEqual(
        {retry_fun, #{retries_left => 1, delay => 15, tag => <<"mine">>, calls => 1}}, recv_fun()
    ),
    ?assertMatch(
        {ws_port_down, Conn, econnrefused, #{attempt := 2, delay_ms := 20}}, recv_any(Conn)
    ),
    ?assertEqual(
        {retry_fun, #{retries_left => 0, delay => 20, tag => <<"mine">>, calls => 2}}, recv_fun()
    ),
    %% stop: closed with the last failure's reason, nothing after it
    ?assertEqual({ws_port_closed, Conn, econnrefused}, recv_any(Conn)),
    receive
        M -> ?assertEqual(nothing, M)
    after 300 -> ok
    end,
    ?assertEqual({error, closed}, ws_port:send(Conn, {text, <<"x">>})).

retry_fun_crash(_Peer) ->
    flush(),
    Logger = logger:get_primary_config(),
    ok = logger:set_primary_config(level, error),
    try
        {ok, C1} = ws_port:connect(closed_url(), #{
            await => false, retry_fun => fun(_) -> error(boom) end
        }),
        ?assertEqual({ws_port_closed, C1, econnrefused}, recv_any(C1)),
        {ok, C2} = ws_port:connect(closed_url(), #{
            await => false, retry_fun => fun(S) -> maps:remove(delay, S) end
        }),
        ?assertEqual({ws_port_closed, C2, econnrefused}, recv_any(C2))
    after
        logger:set_primary_config(level, maps:get(level, Logger))
    end.

%% The server closes every connection right after the handshake; each
%% close is retried (remote_close) and the reconnect succeeds, so the fun
%% must see the initial state every time.
retry_fun_reset(Peer) ->
    flush(),
    Self = self(),
    Fun = fun(#{retries_left := N} = S) ->
        Self ! {retry_fun, S},
        S#{retries_left := N - 1, delay := 10, seen => true}
    end,
    Init = #{retries_left => 3, delay => 0},
    {ok, Conn} = ws_port:connect(
        base(Peer) ++ "/close?code=4001&reason=bye",
        #{retry_fun => Fun, retry_state => Init, retry_on => [{remote_close, [4001]}]}
    ),
    lists:foreach(
        fun(_) ->
            ?assertMatch({ws_port_down, Conn, {remote, 4001, <<"bye">>}, #{attempt := 1}}, recv_any(Conn)),
            ?assertEqual({retry_fun, Init}, recv_fun()),
            ?assertMatch({ws_port_up, Conn, #{status := 101}}, recv_any(Conn))
        end,
        [1, 2, 3]
    ),
    {ok, #{reconnects := R}} = ws_port:info(Conn),
    ?assert(R >= 3),
    ok = ws_port:close(Conn),
    flush().

auto_exhausted(_Peer) ->
    flush(),
    Policy = #{max_retries => 2, delay => 30, backoff_factor => 2, jitter => 0},
    {ok, Conn} = ws_port:connect(closed_url(), #{await => false, retry => Policy}),
    ?assertMatch({ws_port_down, Conn, econnrefused, #{attempt := 1, delay_ms := 30}}, recv_any(Conn)),
    ?assertMatch({ws_port_down, Conn, econnrefused, #{attempt := 2, delay_ms := 60}}, recv_any(Conn)),
    ?assertEqual({ws_port_closed, Conn, econnrefused}, recv_any(Conn)).

not_retried_4xx(Peer) ->
    flush(),
    ?assertMatch(
        {error, {http_status, 401, _}}, ws_port:connect(base(Peer) ++ "/status?code=401", #{})
    ),
    {ok, C401} = ws_port:connect(base(Peer) ++ "/status?code=403", #{await => false}),
    ?assertMatch({ws_port_closed, C401, {http_status, 403, _}}, recv_any(C401)),
    %% 503 is retried
    {ok, C503} = ws_port:connect(base(Peer) ++ "/status?code=503", #{
        await => false, retry => #{delay => 10}
    }),
    ?assertMatch({ws_port_down, C503, {http_status, 503, _}, #{attempt := 1}}, recv_any(C503)),
    ok = ws_port:close(C503),
    flush().

sends_while_down(Peer) ->
    flush(),
    Opts = #{await => false, retry => #{delay => 200, jitter => 0}},
    %% no send_queue: refused on the BEAM side
    {ok, C1} = ws_port:connect(closed_url(), Opts),
    ?assertEqual({error, not_connected}, ws_port:send(C1, {text, <<"lost">>})),
    ?assertMatch({ws_port_down, C1, econnrefused, _}, recv_any(C1)),
    ?assertEqual({error, not_connected}, ws_port:send(C1, {text, <<"lost">>})),
    ok = ws_port:close(C1),
    %% send_queue => 2: two kept, the third dropped and named to the owner
    {ok, C2} = ws_port:connect(closed_url(), Opts#{send_queue => 2}),
    ?assertMatch({ws_port_down, C2, econnrefused, _}, recv_any(C2)),
    ?assertEqual(ok, ws_port:send(C2, {text, <<"1">>})),
    ?assertEqual(ok, ws_port:send(C2, {text, <<"2">>})),
    ?assertEqual(ok, ws_port:send(C2, {text, <<"3">>})),
    ?assertMatch({ws_port_error, C2, {not_connected, _}}, recv_kind(C2, ws_port_error)),
    ok = ws_port:close(C2),
    %% kept frames are flushed in order after the handshake
    {ok, C3} = ws_port:connect(base(Peer) ++ "/echo", #{await => false, send_queue => 4}),
    [ok = ws_port:send(C3, {text, integer_to_binary(I)}) || I <- [1, 2, 3]],
    ?assertMatch({ws_port_up, C3, _}, recv_any(C3)),
    ?assertEqual(
        [{text, <<"1">>}, {text, <<"2">>}, {text, <<"3">>}], [recv(C3), recv(C3), recv(C3)]
    ),
    ok = ws_port:close(C3),
    flush().

info_keys(Peer) ->
    flush(),
    {ok, Conn} = ws_port:connect(base(Peer) ++ "/echo", #{}),
    ok = ws_port:send(Conn, {ping, <<"p">>}),
    ?assertMatch({ws_port_pong, Conn, _}, recv_any(Conn)),
    {ok, Info} = ws_port:info(Conn),
    Keys = [
        state, url, attempt, reconnects, bytes_in, bytes_out, msgs_in, msgs_out, rtt_us, connected_us
    ],
    ?assertEqual([], Keys -- maps:keys(Info)),
    ?assertMatch(#{state := open, attempt := 0, reconnects := 0}, Info),
    ?assert(is_integer(maps:get(rtt_us, Info))),
    ?assert(is_integer(maps:get(connected_us, Info))),
    ok = ws_port:close(Conn).

%%====================================================================
%% Helpers
%%====================================================================

recv(Conn) ->
    receive
        {ws_port, Conn, Msg} -> Msg;
        {ws_port_closed, Conn, Reason} -> error({closed, Reason})
    after ?WAIT -> error(timeout)
    end.

recv_any(Conn) ->
    receive
        M when element(1, M) =/= retry_fun, element(2, M) =:= Conn -> M
    after ?WAIT -> error(timeout)
    end.

recv_kind(Conn, Kind) ->
    receive
        M when element(1, M) =:= Kind, element(2, M) =:= Conn -> M
    after ?WAIT -> error(timeout)
    end.

recv_fun() ->
    receive
        {retry_fun, _} = M -> M
    after ?WAIT -> error(timeout)
    end.
