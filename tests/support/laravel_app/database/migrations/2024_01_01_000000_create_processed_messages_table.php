<?php

use Illuminate\Database\Migrations\Migration;
use Illuminate\Database\Schema\Blueprint;
use Illuminate\Support\Facades\Schema;

class CreateProcessedMessagesTable extends Migration
{
    public function up()
    {
        Schema::create('processed_messages', function (Blueprint $table) {
            $table->id();
            $table->string('message');
            $table->string('dispatched_by');
            $table->string('processed_by');
            $table->timestamp('processed_at');
        });
    }

    public function down()
    {
        Schema::dropIfExists('processed_messages');
    }
}
