%% @doc The Deribit JSON-RPC heartbeat, as a {@link ws_port_heartbeat}.
%%
%% After every connect the client asks the server for heartbeats:
%% ```
%% {"jsonrpc":"2.0","id":Id,"method":"public/set_heartbeat","params":{"interval":30}}
%% '''
%% The server then sends, every interval,
%% `{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"heartbeat"}}' or
%% `{..., "params":{"type":"test_request"}}'; a test request must be
%% answered with `public/test', or the server closes the connection. This
%% module answers test requests, counts every heartbeat as a sign of life and
%% takes the round-trip time from the answer to its `public/test'.
%% Heartbeat messages and the answers to its own requests are consumed: the
%% client's `handle_frame/2' never sees them.
%%
%% Options (a map; `heartbeat => #{type => deribit, interval => 30000}' or
%% `{deribit, #{...}}'):
%% <ul>
%% <li>`interval': ms between the server's heartbeats (default 30000; Deribit
%%     takes whole seconds, at least 10; a value that is not a whole number
%%     of seconds is sent as a fraction, which test servers may accept).</li>
%% <li>`max_misses': intervals in a row without a heartbeat that make the
%%     connection dead (default 2).</li>
%% </ul>
%% Request ids are integers from 7000000000000 up, so they do not clash with
%% the small ids applications usually use.
-module(ws_port_heartbeat_deribit).

-behaviour(ws_port_heartbeat).

-export([init/1, connected/1, tick/1, handle_frame/2]).
-export([decode_json/1]).

-define(ID_BASE, 7000000000000).

-record(hb, {
    interval :: pos_integer(),
    next_id = ?ID_BASE :: pos_integer(),
    %% our requests awaiting an answer: Id => {Kind, SentAtMicros}
    pending = #{} :: #{integer() => {set_heartbeat | test, integer()}}
}).

-opaque state() :: #hb{}.
-export_type([state/0]).

%% @doc Reads `interval' and `max_misses'.
-spec init(map()) -> {ok, pos_integer(), pos_integer(), state()}.
init(Opts) ->
    Interval = maps:get(interval, Opts, 30000),
    MaxMisses = maps:get(max_misses, Opts, 2),
    (is_integer(Interval) andalso Interval > 0) orelse error({bad_option, interval, Interval}),
    (is_integer(MaxMisses) andalso MaxMisses > 0) orelse
        error({bad_option, max_misses, MaxMisses}),
    {ok, Interval, MaxMisses, #hb{interval = Interval}}.

%% @doc Sends `public/set_heartbeat'; forgets requests of the previous
%% connection.
-spec connected(state()) -> {[ws_port_heartbeat:frame()], state()}.
connected(#hb{interval = Interval} = S) ->
    Seconds =
        case Interval rem 1000 of
            0 -> integer_to_binary(Interval div 1000);
            _ -> float_to_binary(Interval / 1000, [{decimals, 3}, compact])
        end,
    request(
        set_heartbeat,
        <<"public/set_heartbeat">>,
        <<"{\"interval\":", Seconds/binary, "}">>,
        S#hb{pending = #{}}
    ).

%% @doc Nothing to send: the server drives the Deribit heartbeat. Forgets
%% requests left unanswered for more than two intervals.
-spec tick(state()) -> {[ws_port_heartbeat:frame()], state()}.
tick(#hb{interval = Interval, pending = Pending} = S) ->
    Oldest = erlang:monotonic_time(microsecond) - 2000 * Interval,
    {[], S#hb{pending = maps:filter(fun(_, {_, At}) -> At >= Oldest end, Pending)}}.

%% @doc Consumes heartbeats (answering test requests) and the answers to
%% this module's own requests; passes everything else on.
-spec handle_frame({text | binary, binary()}, state()) ->
    pass
    | {alive, non_neg_integer() | undefined, [ws_port_heartbeat:frame()], state()}
    | {consumed, [ws_port_heartbeat:frame()], state()}.
handle_frame({text, Data}, S) ->
    case worth_decoding(Data, S) of
        true -> classify(decode_json(Data), S);
        false -> pass
    end;
handle_frame(_, _S) ->
    pass.

%% Cheap test first: only heartbeats and answers to our ids are decoded.
worth_decoding(Data, #hb{pending = Pending}) ->
    binary:match(Data, <<"heartbeat">>) =/= nomatch orelse
        (map_size(Pending) > 0 andalso binary:match(Data, <<"\"id\"">>) =/= nomatch).

classify({ok, #{<<"method">> := <<"heartbeat">>} = Msg}, S) ->
    case Msg of
        #{<<"params">> := #{<<"type">> := <<"test_request">>}} ->
            {Frames, S2} = request(test, <<"public/test">>, <<"{}">>, S),
            {alive, undefined, Frames, S2};
        _ ->
            {alive, undefined, [], S}
    end;
classify({ok, #{<<"id">> := Id} = Msg}, #hb{pending = Pending} = S) when is_integer(Id) ->
    case maps:take(Id, Pending) of
        {{test, SentAt}, Rest} ->
            Rtt = erlang:monotonic_time(microsecond) - SentAt,
            {alive, Rtt, [], S#hb{pending = Rest}};
        {{set_heartbeat, _}, Rest} ->
            case Msg of
                #{<<"error">> := Error} ->
                    logger:warning("ws_port_heartbeat_deribit: set_heartbeat refused: ~tp", [Error]);
                _ ->
                    ok
            end,
            {consumed, [], S#hb{pending = Rest}};
        error ->
            pass
    end;
classify(_, _S) ->
    pass.

request(Kind, Method, Params, #hb{next_id = Id, pending = Pending} = S) ->
    Frame =
        {text, [
            <<"{\"jsonrpc\":\"2.0\",\"id\":">>,
            integer_to_binary(Id),
            <<",\"method\":\"">>,
            Method,
            <<"\",\"params\":">>,
            Params,
            <<"}">>
        ]},
    Now = erlang:monotonic_time(microsecond),
    {[Frame], S#hb{next_id = Id + 1, pending = Pending#{Id => {Kind, Now}}}}.

%%====================================================================
%% A small JSON decoder (OTP 25 has none): objects become maps with binary
%% keys, arrays lists, strings binaries, null/true/false atoms.
%%====================================================================

%% @doc Decodes one JSON value (RFC 8259). Returns `error' for anything that
%% is not exactly one valid JSON text.
-spec decode_json(binary()) -> {ok, term()} | error.
decode_json(Bin) ->
    try value(ws(Bin)) of
        {Value, Rest} ->
            case ws(Rest) of
                <<>> -> {ok, Value};
                _ -> error
            end
    catch
        throw:bad_json -> error;
        error:_ -> error
    end.

ws(<<C, Rest/binary>>) when C =:= $\s; C =:= $\t; C =:= $\n; C =:= $\r -> ws(Rest);
ws(Bin) -> Bin.

value(<<${, Rest/binary>>) -> object(ws(Rest), #{});
value(<<$[, Rest/binary>>) -> array(ws(Rest), []);
value(<<$", Rest/binary>>) -> string(Rest, []);
value(<<"true", Rest/binary>>) -> {true, Rest};
value(<<"false", Rest/binary>>) -> {false, Rest};
value(<<"null", Rest/binary>>) -> {null, Rest};
value(<<C, _/binary>> = Bin) when C =:= $-; C >= $0, C =< $9 -> number(Bin);
value(_) -> throw(bad_json).

object(<<$}, Rest/binary>>, Acc) when map_size(Acc) =:= 0 ->
    {Acc, Rest};
object(<<$", Rest/binary>>, Acc) ->
    {Key, R1} = string(Rest, []),
    <<$:, R2/binary>> = ws(R1),
    {Value, R3} = value(ws(R2)),
    case ws(R3) of
        <<$,, R4/binary>> -> object(ws(R4), Acc#{Key => Value});
        <<$}, R4/binary>> -> {Acc#{Key => Value}, R4};
        _ -> throw(bad_json)
    end;
object(_, _) ->
    throw(bad_json).

array(<<$], Rest/binary>>, []) ->
    {[], Rest};
array(Bin, Acc) ->
    {Value, R1} = value(Bin),
    case ws(R1) of
        <<$,, R2/binary>> -> array(ws(R2), [Value | Acc]);
        <<$], R2/binary>> -> {lists:reverse([Value | Acc]), R2};
        _ -> throw(bad_json)
    end.

string(<<$", Rest/binary>>, Acc) ->
    {unicode:characters_to_binary(lists:reverse(Acc)), Rest};
string(<<$\\, $u, H:4/binary, Rest/binary>>, Acc) ->
    Hi = binary_to_integer(H, 16),
    case Rest of
        <<$\\, $u, L:4/binary, Rest2/binary>> when Hi >= 16#D800, Hi =< 16#DBFF ->
            Lo = binary_to_integer(L, 16),
            string(Rest2, [16#10000 + ((Hi - 16#D800) bsl 10) + (Lo - 16#DC00) | Acc]);
        _ ->
            string(Rest, [Hi | Acc])
    end;
string(<<$\\, C, Rest/binary>>, Acc) ->
    Char =
        case C of
            $" -> $";
            $\\ -> $\\;
            $/ -> $/;
            $b -> $\b;
            $f -> $\f;
            $n -> $\n;
            $r -> $\r;
            $t -> $\t;
            _ -> throw(bad_json)
        end,
    string(Rest, [Char | Acc]);
string(<<C/utf8, Rest/binary>>, Acc) when C >= 16#20 ->
    string(Rest, [C | Acc]);
string(_, _) ->
    throw(bad_json).

number(Bin) ->
    {Int, Rest} = take(Bin, fun(C) -> C =:= $- orelse (C >= $0 andalso C =< $9) end),
    {Frac, Rest2} =
        case Rest of
            <<$., R/binary>> -> take(R, fun(C) -> C >= $0 andalso C =< $9 end);
            _ -> {<<>>, Rest}
        end,
    {Exp, Rest3} =
        case Rest2 of
            <<E, R2/binary>> when E =:= $e; E =:= $E ->
                take(R2, fun(C) -> C =:= $- orelse C =:= $+ orelse (C >= $0 andalso C =< $9) end);
            _ ->
                {<<>>, Rest2}
        end,
    Value =
        case {Frac, Exp} of
            {<<>>, <<>>} ->
                binary_to_integer(Int);
            _ ->
                F = case Frac of <<>> -> <<"0">>; _ -> Frac end,
                E2 = case Exp of <<>> -> <<>>; _ -> <<"e", Exp/binary>> end,
                binary_to_float(<<Int/binary, ".", F/binary, E2/binary>>)
        end,
    {Value, Rest3}.

take(Bin, Pred) -> take(Bin, Pred, 0).

take(Bin, Pred, N) ->
    case Bin of
        <<_:N/binary, C, _/binary>> ->
            case Pred(C) of
                true -> take(Bin, Pred, N + 1);
                false -> split_binary(Bin, N)
            end;
        _ ->
            split_binary(Bin, N)
    end.
