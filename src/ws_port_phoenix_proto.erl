%% @doc Phoenix Channels' wire format, pure: the socket URL, the V1 and V2
%% JSON serializers, V2's binary frames, and the JSON codec adapter.
%%
%% A message is `#{join_ref, ref, topic, event, payload}' (`join_ref' and
%% `ref' are binaries or `undefined'); a binary payload is `{binary, Bin}'.
%% V2 text frames are `[join_ref, ref, topic, event, payload]', V1 text
%% frames `{"topic", "event", "payload", "ref", "join_ref"}'. V2 binary
%% frames (Phoenix.Socket.V2.JSONSerializer):
%% <ul>
%% <li>push, client to server: `<<0, JoinRefSize, RefSize, TopicSize,
%%     EventSize, JoinRef, Ref, Topic, Event, Payload>>'</li>
%% <li>push, server to client: `<<0, JoinRefSize, TopicSize, EventSize,
%%     JoinRef, Topic, Event, Payload>>'</li>
%% <li>reply: `<<1, JoinRefSize, RefSize, TopicSize, StatusSize, JoinRef,
%%     Ref, Topic, Status, Payload>>'</li>
%% <li>broadcast: `<<2, TopicSize, EventSize, Topic, Event, Payload>>'</li>
%% </ul>
-module(ws_port_phoenix_proto).

-export([socket_url/3, encode/3, decode/3, json_encode/2, json_decode/2]).

-export_type([message/0, serializer/0, json/0]).

-type serializer() :: v1 | v2.
%% The JSON codec: a module and the term standing for JSON null.
-type json() :: {module(), term()}.
-type message() :: #{
    join_ref := binary() | undefined,
    ref := binary() | undefined,
    topic := binary(),
    event := binary(),
    payload := term()
}.

-define(PUSH, 0).
-define(REPLY, 1).
-define(BROADCAST, 2).

%%====================================================================
%% URL
%%====================================================================

%% @doc The URL to open: `Url' as the user wrote it
%% (`ws://host/socket/websocket'), plus the connect `Params' in its query
%% string and `vsn' unless the query already has one (`2.0.0' for V2,
%% `1.0.0' for V1). Nested maps are written as phoenix.js does
%% (`user[id]=1').
-spec socket_url(ws_port:url(), map() | [{term(), term()}], serializer()) ->
    {ok, binary()} | {error, {invalid_url, term()} | {bad_option, params, term()}}.
socket_url(Url, Params, Serializer) ->
    %% a URL that is not one is named as ws_port:connect/2 names it
    case ws_port_proto:normalize_url(Url) of
        {ok, UrlBin} -> socket_url_bin(UrlBin, Params, Serializer);
        {error, _} = Error -> Error
    end.

socket_url_bin(UrlBin, Params, Serializer) ->
    try
        Parsed = #{} = uri_string:parse(UrlBin),
        Query0 =
            case Parsed of
                #{query := Q} -> uri_string:dissect_query(Q);
                _ -> []
            end,
        is_list(Query0) orelse throw({invalid_url, UrlBin}),
        Extra = flatten_params(Params),
        Vsn =
            case lists:keymember(<<"vsn">>, 1, Query0 ++ Extra) of
                true -> [];
                false -> [{<<"vsn">>, vsn(Serializer)}]
            end,
        Query = uri_string:compose_query(Query0 ++ Extra ++ Vsn),
        {ok, iolist_to_binary(uri_string:recompose(Parsed#{query => Query}))}
    catch
        throw:{bad_params, P} -> {error, {bad_option, params, P}};
        throw:{invalid_url, U} -> {error, {invalid_url, U}};
        error:_ -> {error, {invalid_url, UrlBin}}
    end.

vsn(v2) -> <<"2.0.0">>;
vsn(v1) -> <<"1.0.0">>.

flatten_params(Params) when is_map(Params) ->
    flatten_params(maps:to_list(Params));
flatten_params(Params) when is_list(Params) ->
    lists:append([param(to_text(K), V) || {K, V} <- Params]);
flatten_params(Params) ->
    throw({bad_params, Params}).

param(Key, V) when is_map(V) ->
    [{<<Key/binary, "[", K/binary, "]">>, X} || {K, X} <- flatten_params(V)];
param(Key, V) ->
    [{Key, to_text(V)}].

to_text(B) when is_binary(B) -> B;
to_text(A) when is_atom(A) -> atom_to_binary(A, utf8);
to_text(I) when is_integer(I) -> integer_to_binary(I);
to_text(F) when is_float(F) -> float_to_binary(F, [short]);
to_text(L) when is_list(L) ->
    case unicode:characters_to_binary(L) of
        B when is_binary(B) -> B;
        _ -> throw({bad_params, L})
    end;
to_text(Other) ->
    throw({bad_params, Other}).

%%====================================================================
%% Serializers
%%====================================================================

%% @doc Encodes a message for the wire: `{text, iodata()}' or, for a
%% `{binary, Bin}' payload (V2 only), `{binary, iodata()}'.
-spec encode(serializer(), json(), message()) -> {ok, ws_port:message()} | {error, term()}.
encode(v2, _Json, #{payload := {binary, Data}} = M) when is_binary(Data) ->
    #{join_ref := JoinRef, ref := Ref, topic := Topic, event := Event} = M,
    Parts = [bin(JoinRef), bin(Ref), Topic, Event],
    case lists:all(fun(P) -> byte_size(P) =< 255 end, Parts) of
        true ->
            Sizes = [byte_size(P) || P <- Parts],
            {ok, {binary, [?PUSH, Sizes, Parts, Data]}};
        false ->
            {error, {too_long_for_binary_frame, Parts}}
    end;
encode(v1, _Json, #{payload := {binary, _}}) ->
    {error, {binary_payload_needs_v2, v1}};
encode(v2, Json, M) ->
    Null = wire_null(Json),
    #{join_ref := JoinRef, ref := Ref, topic := Topic, event := Event, payload := Payload} = M,
    text(json_encode(Json, [null(JoinRef, Null), null(Ref, Null), Topic, Event, Payload]));
encode(v1, Json, M) ->
    Null = wire_null(Json),
    #{join_ref := JoinRef, ref := Ref, topic := Topic, event := Event, payload := Payload} = M,
    Obj = #{
        <<"topic">> => Topic,
        <<"event">> => Event,
        <<"payload">> => Payload,
        <<"ref">> => null(Ref, Null),
        <<"join_ref">> => null(JoinRef, Null)
    },
    text(json_encode(Json, Obj)).

text({ok, IoData}) -> {ok, {text, IoData}};
text(Error) -> Error.

bin(undefined) -> <<>>;
bin(B) -> B.

null(undefined, Null) -> Null;
null(B, _) -> B.

%% @doc Decodes a frame from the server. `{error, Why}' names what is
%% wrong with it.
-spec decode(serializer(), json(), {text | binary, binary()}) ->
    {ok, message()} | {error, term()}.
decode(_, _Json, {binary, <<?PUSH, JS, TS, ES, JoinRef:JS/binary, Topic:TS/binary, Event:ES/binary,
                            Data/binary>>}) ->
    {ok, message(JoinRef, <<>>, Topic, Event, {binary, Data})};
decode(_, _Json, {binary, <<?REPLY, JS, RS, TS, SS, JoinRef:JS/binary, Ref:RS/binary, Topic:TS/binary,
                            Status:SS/binary, Data/binary>>}) ->
    Payload = #{<<"status">> => Status, <<"response">> => {binary, Data}},
    {ok, message(JoinRef, Ref, Topic, <<"phx_reply">>, Payload)};
decode(_, _Json, {binary, <<?BROADCAST, TS, ES, Topic:TS/binary, Event:ES/binary, Data/binary>>}) ->
    {ok, message(<<>>, <<>>, Topic, Event, {binary, Data})};
decode(_, _Json, {binary, Other}) ->
    {error, {bad_binary_frame, binary:part(Other, 0, min(16, byte_size(Other)))}};
decode(v2, Json, {text, Text}) ->
    Null = wire_null(Json),
    case json_decode(Json, Text) of
        {ok, [JoinRef, Ref, Topic, Event, Payload]} when is_binary(Topic), is_binary(Event) ->
            case {ref(JoinRef, Null), ref(Ref, Null)} of
                {{ok, J}, {ok, R}} -> {ok, #{join_ref => J, ref => R, topic => Topic, event => Event,
                                             payload => Payload}};
                _ -> {error, {bad_message, Text}}
            end;
        {ok, _} ->
            {error, {bad_message, Text}};
        {error, Why} ->
            {error, {bad_json, Why}}
    end;
decode(v1, Json, {text, Text}) ->
    Null = wire_null(Json),
    case json_decode(Json, Text) of
        {ok, #{<<"topic">> := Topic, <<"event">> := Event} = M} when is_binary(Topic), is_binary(Event) ->
            case {ref(maps:get(<<"join_ref">>, M, Null), Null), ref(maps:get(<<"ref">>, M, Null), Null)} of
                {{ok, J}, {ok, R}} ->
                    {ok, #{join_ref => J, ref => R, topic => Topic, event => Event,
                           payload => maps:get(<<"payload">>, M, #{})}};
                _ ->
                    {error, {bad_message, Text}}
            end;
        {ok, _} ->
            {error, {bad_message, Text}};
        {error, Why} ->
            {error, {bad_json, Why}}
    end.

%% The term standing for null in the envelope: OTP 27's json encodes and
%% decodes only the atom null as null (nil would be the string "nil"),
%% whatever null the user's payloads use.
wire_null({json, _}) -> null;
wire_null({_, Null}) -> Null.

message(JoinRef, Ref, Topic, Event, Payload) ->
    #{join_ref => undef(JoinRef), ref => undef(Ref), topic => Topic, event => Event, payload => Payload}.

undef(<<>>) -> undefined;
undef(B) -> B.

ref(Null, Null) -> {ok, undefined};
ref(B, _) when is_binary(B) -> {ok, B};
ref(I, _) when is_integer(I) -> {ok, integer_to_binary(I)};
ref(_, _) -> error.

%%====================================================================
%% JSON codecs
%%====================================================================

%% @doc Encodes with the configured codec: {@link ws_port_json}, OTP 27's
%% `json' (iodata, raises), or any module whose `encode/1' returns `{ok,
%% iodata()}', `{error, _}' or iodata (Jason, Poison).
-spec json_encode(json(), term()) -> {ok, iodata()} | {error, term()}.
json_encode({ws_port_json, _}, Term) ->
    ws_port_json:encode(Term);
json_encode({Mod, _}, Term) ->
    try Mod:encode(Term) of
        {ok, IoData} -> {ok, IoData};
        {error, _} = Error -> Error;
        IoData when is_binary(IoData); is_list(IoData) -> {ok, IoData};
        Other -> {error, {bad_json_encoder_result, Mod, Other}}
    catch
        Class:Reason -> {error, {json_encode, Mod, {Class, Reason}}}
    end.

%% @doc Decodes with the configured codec (see {@link json_encode/2});
%% {@link ws_port_json} is given the null term.
-spec json_decode(json(), binary()) -> {ok, term()} | {error, term()}.
json_decode({ws_port_json, Null}, Bin) ->
    ws_port_json:decode(Bin, #{null => Null});
json_decode({Mod, _}, Bin) ->
    try Mod:decode(Bin) of
        {ok, Term} -> {ok, Term};
        {error, _} = Error -> Error;
        Term -> {ok, Term}
    catch
        Class:Reason -> {error, {json_decode, Mod, {Class, Reason}}}
    end.
