<?php

use Illuminate\Database\Migrations\Migration;
use Illuminate\Database\Schema\Blueprint;
use Illuminate\Support\Facades\Schema;

class CreateScheduleTicksTable extends Migration
{
    public function up()
    {
        Schema::create('schedule_ticks', function (Blueprint $table) {
            $table->id();
            $table->string('release');
            $table->timestamp('ran_at');
        });
    }

    public function down()
    {
        Schema::dropIfExists('schedule_ticks');
    }
}
