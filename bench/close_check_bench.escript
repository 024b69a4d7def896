#!/usr/bin/env escript
-mode(compile).
%% The cost of ws_port_client's close/1 check on the frame path: an
%% ets:member/2 on the public ws_port_closing table (as ws_port_sup makes
%% it; a few rows, none for the caller), against a reference measured in
%% the same run: sending a 40-byte frame message to self and receiving it,
%% the least a frame costs the client. The client looks on every 32nd frame
%% (?CLOSE_CHECK), so its cost per frame is a 32nd of the lookup.
%% Usage: escript bench/close_check_bench.escript [Calls] [Rounds]
main(Args) ->
    {N, Rounds} =
        case Args of
            [A, B] -> {list_to_integer(A), list_to_integer(B)};
            [A] -> {list_to_integer(A), 5};
            [] -> {10000000, 5}
        end,
    T = ets:new(ws_port_closing, [
        set, public, named_table, {read_concurrency, true}, {write_concurrency, true}
    ]),
    _ = [ets:insert(T, {spawn(fun() -> ok end), 1}) || _ <- lists:seq(1, 10)],
    Msg = {ws_port, {ws_port, ws_port_driver_1, 12345}, {text, binary:copy(<<"x">>, 40)}},
    io:format("calls per round: ~b~n", [N]),
    [
        begin
            M = ns(fun() -> member(N, self()) end, N),
            S = ns(fun() -> sendrecv(N, Msg) end, N),
            io:format(
                "round ~b: ets:member ~.1f ns, send+receive ~.1f ns, member/send ~.2f, "
                "per frame (1/32) ~.1f ns = ~.3f of send+receive~n",
                [R, M, S, M / S, M / 32, M / 32 / S]
            )
        end
     || R <- lists:seq(1, Rounds)
    ],
    ok.

ns(F, N) ->
    {Us, ok} = timer:tc(F),
    Us * 1000 / N.

member(0, _) -> ok;
member(N, P) -> false = ets:member(ws_port_closing, P), member(N - 1, P).

sendrecv(0, _) -> ok;
sendrecv(N, Msg) ->
    self() ! Msg,
    receive
        Msg -> sendrecv(N - 1, Msg)
    end.
